"""Fidelity of the synthetic benchmark: does it reward what the real DCASE data rewards?

Runs ``hybrid-asd demo`` (the shipped demo settings) on the ``demo`` preset for each seed (reusing a
finished run), adds two reference inlier models on log-mel statistics computed here (kNN and a
diagonal GMM on standardised per-mel mean and std, source + 3 target clips as memory), a linear probe
of section identity on mean log-mel, and checks the fidelity targets of issue #12 (see
docs/synthetic.md, "Fidelity"):

- F1 section ID not trivial: the demo extractors' validation accuracy after epoch 1 < 0.95 for every
  machine type, and it still improves afterwards;
- F2 the serial hybrid (kNN on learned embeddings) beats the AE baseline by >= 0.03 official score
  (mean over seeds) and is not below it on the target domain;
- F3 the OE baseline is within 0.05 of the AE baseline;
- F4 Mahalanobis / kNN on log-mel statistics do not beat the serial hybrid;
- F5 target AUC below source AUC for every system;
- F6 the AE baseline's official score in 0.54-0.63.

    python benchmarks/fidelity.py --root exp/fidelity --seeds 0 1 2 [--out docs/fidelity_demo.md]

Each seed's demo goes to ``<root>/seed<k>`` (about 13 min on 2 cores); the tables are printed and,
with ``--out``, written as markdown. ``--machines`` restricts the log-mel references and F1 to some
machine types (the demo itself always runs its preset's).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hybrid_asd.evaluation.metrics import harmonic_mean  # noqa: E402

SERIAL = "serial hybrid: kNN on sub-cluster AdaCos embeddings"
AE = "AE baseline"
OE = "MobileNetV2-recipe OE baseline (small CNN)"
LOGMEL_SYSTEMS = ("IM: Mahalanobis on log-mel statistics",)
REF_KNN = "reference: kNN on standardised log-mel statistics (source + 3 target)"
REF_GMM = "reference: GMM on standardised log-mel statistics (source + 3 target)"


# --- the demo runs --------------------------------------------------------------------------------


def run_seed(root: Path, seed: int, preset: str) -> dict:
    """The demo's results of one seed (run now unless ``<root>/seed<k>/results.json`` exists)."""
    out = root / f"seed{seed}"
    if not (out / "results.json").is_file():
        from hybrid_asd.demo import run_demo

        run_demo(out, seed=seed, preset=preset, progress=False)
    return json.loads((out / "results.json").read_text())


def epoch_accuracies(out: Path, config: str) -> dict[str, list[float]]:
    """Validation accuracy per epoch of each machine type's extractor in one demo config."""
    accs = {}
    for log in sorted((out / "exp" / config).glob("*/seed*/extractor/train_log.csv")):
        with open(log, newline="") as fh:
            accs[log.parents[2].name] = [float(r["val_acc"]) for r in csv.DictReader(fh)]
    return accs


# --- reference detectors on log-mel statistics -------------------------------------------------------


def _stats_of_file(path: str) -> np.ndarray:
    import soundfile as sf
    import torch

    torch.set_num_threads(1)
    from hybrid_asd.features.logmel import compute_logmel
    from hybrid_asd.features.patches import clip_statistics

    wave, sr = sf.read(path, dtype="float32")
    mel = compute_logmel(wave, {"n_fft": 1024, "hop_length": 512, "n_mels": 128, "power": 2.0}, sr)
    return np.asarray(clip_statistics(np.asarray(mel, dtype=np.float64)))


def load_stats(data: Path, machines: list[str] | None, workers: int) -> tuple[list[dict], np.ndarray]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with open(data / "synthetic_clips.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if machines is None or r["machine"] in machines]
    paths = [str(data / r["path"]) for r in rows]
    # never fork: this process has run the demo (torch/OpenMP threads) before
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        feats = list(pool.map(_stats_of_file, paths, chunksize=32))
    return rows, np.stack(feats)


def reference_results(rows: list[dict], feats: np.ndarray, seed: int) -> dict[str, dict]:
    """Official-style results of the two references (harmonic means over machine types and sections)."""
    col = {k: np.array([r[k] for r in rows]) for k in ("machine", "section", "domain", "split", "label")}
    per = {REF_KNN: {"source": [], "target": []}, REF_GMM: {"source": [], "target": []}}
    for key in sorted(set(zip(col["machine"], col["section"]))):
        sel = (col["machine"] == key[0]) & (col["section"] == key[1])
        train = feats[sel & (col["split"] == "train")]
        scaler = StandardScaler().fit(train)
        bank = scaler.transform(train)
        knn = NearestNeighbors(n_neighbors=1).fit(bank)
        gmm = GaussianMixture(2, covariance_type="diag", reg_covar=1e-2, random_state=seed).fit(bank)
        for domain in ("source", "target"):
            test = sel & (col["split"] == "test") & (col["domain"] == domain)
            x = scaler.transform(feats[test])
            y = col["label"][test] == "anomaly"
            for name, scores in ((REF_KNN, knn.kneighbors(x)[0][:, 0]), (REF_GMM, -gmm.score_samples(x))):
                per[name][domain].append((roc_auc_score(y, scores), roc_auc_score(y, scores, max_fpr=0.1)))
    out = {}
    for name, doms in per.items():
        res = {d: {"auc": harmonic_mean([a for a, _ in v]), "pauc": harmonic_mean([p for _, p in v])} for d, v in doms.items()}
        every = [x for v in doms.values() for pair in v for x in pair]
        out[name] = {"official_score": harmonic_mean(every), **res}
    return out


def section_probe(rows: list[dict], feats: np.ndarray) -> dict[str, float]:
    """Accuracy of a linear model telling sections apart from mean log-mel (train clips -> test normals)."""
    acc = {}
    n_mels = feats.shape[1] // 2
    for machine in sorted({r["machine"] for r in rows}):
        pick = [i for i, r in enumerate(rows) if r["machine"] == machine and r["domain"] == "source"]
        tr = [i for i in pick if rows[i]["split"] == "train"]
        te = [i for i in pick if rows[i]["split"] == "test" and rows[i]["label"] == "normal"]
        scaler = StandardScaler().fit(feats[tr, :n_mels])
        model = LogisticRegression(max_iter=2000, C=1.0).fit(
            scaler.transform(feats[tr, :n_mels]), [rows[i]["section"] for i in tr]
        )
        acc[machine] = float(model.score(scaler.transform(feats[te, :n_mels]), [rows[i]["section"] for i in te]))
    return acc


# --- report -----------------------------------------------------------------------------------------


def _pm(values: list[float]) -> str:
    values = np.asarray(values, dtype=np.float64)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def summarise(per_seed: dict[int, dict], accs: dict[int, dict], probes: dict[int, dict]) -> tuple[str, dict]:
    seeds = sorted(per_seed)
    systems = list(per_seed[seeds[0]])
    lines = [
        f"Seeds {', '.join(map(str, seeds))}: mean ± std (sample std over seeds).",
        "",
        "| system | source AUC | source pAUC | target AUC | target pAUC | official score |",
        "|---|---|---|---|---|---|",
    ]
    mean = {}
    for name in systems:
        vals = {k: [] for k in ("sa", "sp", "ta", "tp", "off")}
        for s in seeds:
            r = per_seed[s][name]
            vals["sa"].append(r["source"]["auc"])
            vals["sp"].append(r["source"]["pauc"])
            vals["ta"].append(r["target"]["auc"])
            vals["tp"].append(r["target"]["pauc"])
            vals["off"].append(r["official_score"])
        mean[name] = {k: float(np.mean(v)) for k, v in vals.items()}
        mean[name]["per_seed"] = vals
        lines.append(f"| {name} | " + " | ".join(_pm(vals[k]) for k in ("sa", "sp", "ta", "tp", "off")) + " |")

    lines += ["", "Validation accuracy of the demo extractors per epoch (section-ID task):", ""]
    lines += ["| seed | config | machine | epoch 1 | epoch 2 | best | last |", "|---|---|---|---|---|---|---|"]
    for s in seeds:
        for config, per_machine in accs[s].items():
            for machine, a in per_machine.items():
                lines.append(f"| {s} | {config} | {machine} | {a[0]:.3f} | {a[1] if len(a) > 1 else float('nan'):.3f} | {max(a):.3f} | {a[-1]:.3f} |")
    lines += ["", "Linear probe (logistic regression on mean log-mel, source train clips -> source test normals):", ""]
    lines += ["| seed | " + " | ".join(sorted(probes[seeds[0]])) + " |", "|---" * (1 + len(probes[seeds[0]])) + "|"]
    for s in seeds:
        lines.append(f"| {s} | " + " | ".join(f"{probes[s][m]:.3f}" for m in sorted(probes[s])) + " |")

    checks = fidelity_checks(mean, accs)
    lines += ["", "| target | check | measured | pass |", "|---|---|---|---|"]
    for key, (what, measured, ok) in checks.items():
        lines.append(f"| {key} | {what} | {measured} | {'yes' if ok else '**no**'} |")
    return "\n".join(lines), checks


def fidelity_checks(mean: dict, accs: dict[int, dict]) -> dict[str, tuple[str, str, bool]]:
    def hm_target(name: str) -> float:
        return harmonic_mean([mean[name]["ta"], mean[name]["tp"]])

    first = [a[0] for per in accs.values() for cfg in per.values() for a in cfg.values()]
    improves = [max(a[1:]) > a[0] for per in accs.values() for cfg in per.values() for a in cfg.values() if len(a) > 1]
    f2_gap = mean[SERIAL]["off"] - mean[AE]["off"]
    logmel = [n for n in (*LOGMEL_SYSTEMS, REF_KNN, REF_GMM) if n in mean]
    best_logmel = max(logmel, key=lambda n: mean[n]["off"])
    worst_gap = min(mean[n]["sa"] - mean[n]["ta"] for n in mean)
    return {
        "F1": ("val. accuracy after epoch 1 < 0.95 everywhere; improves later",
               f"max epoch-1 {max(first):.3f}; improves in {sum(improves)}/{len(improves)}",
               max(first) < 0.95 and all(improves)),
        # four digits: near the 0.03 threshold three would print +0.030 for a miss
        "F2": ("serial hybrid - AE >= 0.03 official; target not below",
               f"{f2_gap:+.4f}; target hmean {hm_target(SERIAL):.3f} vs {hm_target(AE):.3f}",
               f2_gap >= 0.03 and hm_target(SERIAL) >= hm_target(AE)),
        "F3": ("|OE baseline - AE| <= 0.05",
               f"{mean[OE]['off'] - mean[AE]['off']:+.3f}", abs(mean[OE]["off"] - mean[AE]["off"]) <= 0.05),
        "F4": ("log-mel statistics models <= serial hybrid",
               f"best {best_logmel}: {mean[best_logmel]['off']:.3f} vs {mean[SERIAL]['off']:.3f}",
               mean[best_logmel]["off"] <= mean[SERIAL]["off"]),
        "F5": ("target AUC < source AUC for every system",
               f"smallest source - target AUC {worst_gap:+.3f}", worst_gap > 0),
        "F6": ("AE official score in 0.54-0.63", f"{mean[AE]['off']:.3f}", 0.54 <= mean[AE]["off"] <= 0.63),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("exp/fidelity"), help="one demo run per seed below this")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--machines", nargs="*", help="restrict references and F1 to these machine types")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    args = ap.parse_args(argv)

    per_seed, accs, probes = {}, {}, {}
    for seed in args.seeds:
        results = run_seed(args.root, seed, args.preset)
        out = args.root / f"seed{seed}"
        rows, feats = load_stats(out / "data", args.machines, args.workers)
        results.update(reference_results(rows, feats, seed))
        per_seed[seed] = results
        probes[seed] = section_probe(rows, feats)
        accs[seed] = {c: {m: a for m, a in epoch_accuracies(out, c).items() if not args.machines or m in args.machines}
                      for c in ("demo_baselines", "demo_hybrid")}
    text, _ = summarise(per_seed, accs, probes)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
