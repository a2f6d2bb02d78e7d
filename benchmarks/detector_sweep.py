"""Every detector on log-mel statistics and on learned embeddings, with and without target adaptation.

Reuses the demo's ``demo_hybrid`` experiments (their trained extractor and embeddings): each is copied,
its config extended with one detector entry per (detector, input, adaptation) combination, and only the
fit/score/evaluate stages run. Prints a markdown table (harmonic means over machine types and sections).

    python benchmarks/detector_sweep.py --demo exp/demo [--out exp/sweep]
    python benchmarks/detector_sweep.py --demo exp/demo --out exp/sweep_shift --modes mean_shift
    python benchmarks/detector_sweep.py --demo exp/demo --out exp/sweep_im --detectors knn mahalanobis gmm
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from hybrid_asd.config import Config
from hybrid_asd.evaluation.metrics import evaluate_scores
from hybrid_asd.experiment import Experiment
from hybrid_asd.pipeline import run_stages
from hybrid_asd.scores import ScoreTable

DETECTORS = {
    "knn": {"k": 1, "metric": "cosine"},
    "gmm": {"n_components": 1, "covariance_type": "diag"},
    "mahalanobis": {},
    "flow": {"transforms": 3, "hidden_features": 64, "epochs": 50},
}
INPUTS = ("logmel_stats", "embedding")
MODES = {"none": "source only", "pooled": "pooled (source + 3 target)", "domain_min": "per-domain min (adapted)",
         "mean_shift": "mean shift (source model moved to the target mean)"}


def sweep_entries(modes: list[str] | None = None, detectors: list[str] | None = None) -> list[dict]:
    modes = list(MODES) if modes is None else modes
    detectors = [*DETECTORS, "ae"] if detectors is None else detectors
    entries = []
    for name, conf in DETECTORS.items():
        if name not in detectors:
            continue
        for kind in INPUTS:
            for mode in modes:
                smote = 16 if (mode == "domain_min" and name in ("gmm", "mahalanobis", "flow")) else 0
                entries.append({"name": name, "id": f"{name}__{kind}__{mode}", "input": kind, "conf": dict(conf),
                                "adaptation": {"mode": mode, "smote": smote}, "cross_fit_splits": 0})
    for mode in ("pooled", "domain_min", "mean_shift"):
        if mode in modes and "ae" in detectors:  # the AE as the baseline: one model for all sections, except per-domain models
            entries.append({"name": "ae", "id": f"ae__logmel_frames__{mode}", "input": "logmel_frames",
                            "per_section": mode != "domain_min", "conf": {"epochs": 30},
                            "adaptation": {"mode": mode, "normalise": "train"}, "cross_fit_splits": 0})
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=Path("exp/demo"))
    parser.add_argument("--out", type=Path, default=Path("exp/sweep"))
    parser.add_argument("--modes", nargs="+", choices=list(MODES), help="adaptation modes to run (default: all)")
    parser.add_argument("--detectors", nargs="+", choices=[*DETECTORS, "ae"],
                        help="detectors to run (default: all; the flow and the AE take most of the time)")
    args = parser.parse_args()
    tables: dict[str, list[ScoreTable]] = {}
    for src in sorted((args.demo / "exp" / "demo_hybrid").glob("*/seed*")):
        dst = args.out / src.parent.name / src.name
        if not dst.exists():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("detectors", "scores", "submission", "fused",
                                                                   "eval", "report"))
        exp = Experiment(dst)
        tree = exp.load_config().to_dict()
        tree["detectors"] = sweep_entries(args.modes, args.detectors)
        tree["ensemble"]["members"] = None
        config = Config.parse(tree)
        exp.score_table_path("oe").parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Experiment(src).score_table_path("oe"), exp.score_table_path("oe"))
        run_stages(exp, config, stage="fit", stop_stage="score", overwrite=True, progress=False)
        for entry in config.detectors:
            tables.setdefault(entry.id, []).append(ScoreTable.from_csv(exp.score_table_path(entry.id)))
    print("| detector | input | adaptation | source AUC | source pAUC | target AUC | target pAUC | official |")
    print("|---|---|---|---|---|---|---|---|")
    for det_id, parts in tables.items():
        name, kind, mode = det_id.split("__")
        res = evaluate_scores(ScoreTable.concat(parts, det_id))
        d = res.by_domain()
        print(f"| {name} | {kind} | {MODES.get(mode, mode)} | {d['source']['auc']:.4f} | {d['source']['pauc']:.4f} "
              f"| {d['target']['auc']:.4f} | {d['target']['pauc']:.4f} | {res.official_score:.4f} |")


if __name__ == "__main__":
    main()
