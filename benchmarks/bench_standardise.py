"""Detectors on log-mel statistics with and without input standardisation (#14, item 9).

For each machine type, one experiment without an extractor runs every entry below twice: on the raw
log-mel statistics (``standardise: false``) and standardised with the training rows' per-feature mean
and standard deviation (``standardise: true``, the default for ``logmel_stats`` since #14). Prints one
markdown table of official scores (harmonic mean of AUC and pAUC over sections and domains) and the
source/target AUCs.

    python benchmarks/bench_standardise.py --data-root exp/demo/data --machines fan --out exp/bench_standardise
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hybrid_asd.config import load_config
from hybrid_asd.evaluation.metrics import evaluate_scores
from hybrid_asd.experiment import Experiment
from hybrid_asd.pipeline import run_stages
from hybrid_asd.scores import ScoreTable

ENTRIES = {
    "knn (cosine, k=1), domain_min": {"name": "knn", "conf": {"k": 1, "metric": "cosine"},
                                      "adaptation": {"mode": "domain_min"}},
    "knn (l2, k=1), domain_min": {"name": "knn", "conf": {"k": 1, "metric": "l2"}, "adaptation": {"mode": "domain_min"}},
    "mahalanobis, pooled": {"name": "mahalanobis", "adaptation": {"mode": "pooled"}},
    "gmm (diag, 1), mean_shift": {"name": "gmm", "conf": {"n_components": 1, "covariance_type": "diag"},
                                  "adaptation": {"mode": "mean_shift"}},
}


def entries() -> list[dict]:
    out = []
    for i, entry in enumerate(ENTRIES.values()):
        for standardise in (False, True):
            out.append({**entry, "id": f"e{i}_{'std' if standardise else 'raw'}", "input": "logmel_stats",
                        "standardise": standardise})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--machines", nargs="+", required=True)
    parser.add_argument("--out", type=Path, default=Path("exp/bench_standardise"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    detectors = entries()
    tables: dict[str, list[ScoreTable]] = {d["id"]: [] for d in detectors}
    for machine in args.machines:
        config = load_config(None, [f"data.root={args.data_root.resolve()}", f"data.machine={machine}",
                                    f"seed={args.seed}", "extractor=null", f"detectors={detectors}"])
        exp = Experiment(args.out / machine)
        run_stages(exp, config, stop_stage="score", overwrite=True, progress=False)
        for d in detectors:
            tables[d["id"]].append(ScoreTable.from_csv(exp.score_table_path(d["id"])))
    print(f"machine types: {', '.join(args.machines)}; data: {args.data_root}")
    print("| detector on logmel_stats | raw: official | standardised: official | raw: source / target AUC | "
          "standardised: source / target AUC |")
    print("|---|---|---|---|---|")
    for i, label in enumerate(ENTRIES):
        cells = []
        for kind in ("raw", "std"):
            res = evaluate_scores(ScoreTable.concat(tables[f"e{i}_{kind}"]))
            d = res.by_domain()
            cells.append((f"{res.official_score:.4f}", f"{d['source']['auc']:.4f} / {d['target']['auc']:.4f}"))
        print(f"| {label} | {cells[0][0]} | {cells[1][0]} | {cells[0][1]} | {cells[1][1]} |")


if __name__ == "__main__":
    main()
