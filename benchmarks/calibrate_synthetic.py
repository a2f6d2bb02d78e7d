"""Calibrate the synthetic data set with simple reference detectors on mean log-mel.

For each machine type, section and domain: AUC and pAUC (max FPR 0.1) of
  - GMM    a per-section Gaussian mixture (diagonal) fitted on the source training clips,
  - GMM+T  the same, fitted on source plus the target training clips (oversampled to 10 %),
  - kNN    per-section 1-nearest-neighbour distance to the source training clips,
  - kNN+T  the same, with the target training clips added to the memory,
all on standardised mean log-mel vectors (128 mels, n_fft 1024, hop 512: the project front end,
``hybrid_asd.features.logmel.compute_logmel``, or librosa where that is absent).

    # on a generated folder (what docs/synthetic.md reports)
    python benchmarks/calibrate_synthetic.py --data data/synthetic_demo --out docs/synthetic_calibration.md
    # spectrogram pictures of every machine type
    python benchmarks/calibrate_synthetic.py --figures docs/img/synthetic
    # without writing WAVs: renders clips in memory (for tuning the generator)
    python benchmarks/calibrate_synthetic.py --preset demo --machines fan pump --n-source-train 100 --workers 2

It also prints the source-domain AUC per fault kind (kNN), which is what the tuning looks at.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hybrid_asd.data import synthetic  # noqa: E402

FRONT_END = {"n_fft": 1024, "hop_length": 512, "n_mels": 128, "power": 2.0}
METHODS = ("GMM", "GMM+T", "kNN", "kNN+T")


# --- features --------------------------------------------------------------------------------------


def _logmel_fn():
    try:
        import torch

        torch.set_num_threads(1)
        from hybrid_asd.features.logmel import compute_logmel

        return lambda wave, sr: compute_logmel(np.asarray(wave, np.float32), FRONT_END, sr), "hybrid_asd compute_logmel"
    except Exception:  # noqa: BLE001 - the project front end may not exist yet: use librosa
        import librosa

        def librosa_logmel(wave: np.ndarray, sr: int) -> np.ndarray:
            mel = librosa.feature.melspectrogram(
                y=np.asarray(wave, np.float32), sr=sr, n_fft=1024, hop_length=512, n_mels=128, power=2.0
            )
            return 10.0 * np.log10(np.maximum(mel, 1e-10))

        return librosa_logmel, "librosa"


_LOGMEL = None


def mean_logmel(wave: np.ndarray, sr: int) -> np.ndarray:
    global _LOGMEL
    if _LOGMEL is None:
        _LOGMEL = _logmel_fn()[0]
    return np.asarray(_LOGMEL(wave, sr), dtype=np.float64).mean(axis=1)


def _features_from_file(row: dict) -> np.ndarray:
    import soundfile as sf

    wave, sr = sf.read(row["abs_path"], dtype="float32")
    return mean_logmel(wave, sr)


_PLANS: dict = {}


def _init_memory(plans: dict) -> None:
    _PLANS.update(plans)


def _features_in_memory(args: tuple) -> tuple[np.ndarray, dict]:
    task, seed, duration = args
    wave, meta = synthetic.synthesize_clip(task, _PLANS[(task.machine, task.section)], seed, duration)
    wave = synthetic.to_pcm16(wave) / 32768.0
    return mean_logmel(wave, synthetic.SAMPLE_RATE), meta


def load_folder(root: Path, machines: list[str] | None, workers: int) -> tuple[list[dict], np.ndarray]:
    with open(root / "synthetic_clips.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if machines is None or r["machine"] in machines]
    for r in rows:
        r["abs_path"] = str(root / r["path"])
    with ProcessPoolExecutor(workers) as pool:
        feats = list(pool.map(_features_from_file, rows, chunksize=32))
    return rows, np.stack(feats)


def render_memory(preset: synthetic.Preset, seed: int, workers: int) -> tuple[list[dict], np.ndarray]:
    plans = synthetic.plan_sections(seed, preset.machines, preset.sections)
    tasks = synthetic.clip_tasks(preset)
    args = [(t, seed, preset.duration) for t in tasks]
    with ProcessPoolExecutor(workers, initializer=_init_memory, initargs=(plans,)) as pool:
        out = list(pool.map(_features_in_memory, args, chunksize=16))
    rows = []
    for task, (_, meta) in zip(tasks, out):
        rows.append({**{k: str(v) for k, v in vars(task).items()}, **{k: str(v) for k, v in meta.items()}})
    return rows, np.stack([f for f, _ in out])


# --- reference detectors ---------------------------------------------------------------------------


def fit_score(method: str, train_src: np.ndarray, train_tgt: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    """Anomaly scores (higher = more anomalous) of ``test`` under one reference method."""
    use_target = method.endswith("+T") and len(train_tgt) > 0
    train = np.concatenate([train_src, train_tgt]) if use_target else train_src
    scaler = StandardScaler().fit(train)
    x_train, x_test = scaler.transform(train), scaler.transform(test)
    if method.startswith("kNN"):
        nn = NearestNeighbors(n_neighbors=1).fit(x_train)
        return nn.kneighbors(x_test)[0][:, 0]
    if use_target:  # oversample the few target clips to about 10 % of the training set
        reps = max(1, int(round(0.1 * len(train_src) / len(train_tgt))))
        x_train = np.concatenate([scaler.transform(train_src)] + [scaler.transform(train_tgt)] * reps)
    n_comp = int(np.clip(len(x_train) // 40, 1, 4))
    gmm = GaussianMixture(n_comp, covariance_type="diag", reg_covar=1e-2, random_state=seed).fit(x_train)
    return -gmm.score_samples(x_test)


def auc_pair(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    return float(roc_auc_score(labels, scores)), float(roc_auc_score(labels, scores, max_fpr=0.1))


def evaluate(rows: list[dict], feats: np.ndarray, seed: int) -> tuple[list[dict], list[dict]]:
    """Per (machine, section, domain): AUC/pAUC of each method; plus source AUC per fault kind."""
    machine = np.array([r["machine"] for r in rows])
    section = np.array([int(r["section"]) for r in rows])
    domain = np.array([r["domain"] for r in rows])
    split = np.array([r["split"] for r in rows])
    label = np.array([r["label"] == "anomaly" for r in rows])
    kind = np.array([r["anomaly_kind"] for r in rows])
    results, kinds = [], []
    for m in sorted(set(machine), key=synthetic.MACHINE_TYPES.index):
        for s in sorted(set(section[machine == m])):
            sel = (machine == m) & (section == s)
            src = feats[sel & (split == "train") & (domain == "source")]
            tgt = feats[sel & (split == "train") & (domain == "target")]
            for d in ("source", "target"):
                test = sel & (split == "test") & (domain == d)
                row = {"machine": m, "section": s, "domain": d}
                for method in METHODS:
                    scores = fit_score(method, src, tgt, feats[test], seed)
                    row[method] = auc_pair(label[test], scores)
                    if method == "kNN" and d == "source":
                        for k in sorted(set(kind[test & label])):
                            pick = (~label[test]) | (kind[test] == k)
                            kinds.append({"machine": m, "section": s, "kind": k, "auc": auc_pair(label[test][pick], scores[pick])[0]})
                if d == "target":  # how far the domain shift moves normal clips, under the source model
                    normal_src = sel & (split == "test") & (domain == "source") & ~label
                    normal_tgt = test & ~label
                    both = feats[normal_src | normal_tgt]
                    shift_scores = fit_score("kNN", src, tgt, both, seed)
                    row["shift_auc"] = float(roc_auc_score(domain[normal_src | normal_tgt] == "target", shift_scores))
                results.append(row)
    return results, kinds


# --- spectrogram pictures --------------------------------------------------------------------------


def draw_figures(fig_dir: Path, seed: int, machines: list[str] | None) -> list[Path]:
    """One PNG per machine type: log-mel of a normal and an anomalous clip, source and target.

    Renders section 00 of each machine type into a temporary folder (the same clips as in
    every preset with this seed) and picks, per domain, test clip 0000 and the first anomaly
    of severity >= 0.6 (so that the fault is visible; the title names its kind and severity).
    """
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    global _LOGMEL
    if _LOGMEL is None:
        _LOGMEL = _logmel_fn()[0]
    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        synthetic.generate(
            tmp, preset="full", seed=seed, machines=machines or list(synthetic.MACHINE_TYPES), sections=[0],
            n_source_train=1, n_target_train=0, n_test_per_class=12, duration=5.0, overwrite=True, progress=False,
        )  # fmt: skip
        with open(Path(tmp) / "synthetic_clips.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        for machine in machines or synthetic.MACHINE_TYPES:
            fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True, sharey=True)
            for col, domain in enumerate(("source", "target")):
                test = [r for r in rows if r["machine"] == machine and r["domain"] == domain and r["split"] == "test"]
                normal = next(r for r in test if r["label"] == "normal")
                anomaly = next((r for r in test if r["label"] == "anomaly" and float(r["severity"]) >= 0.6), None)
                anomaly = anomaly or next(r for r in test if r["label"] == "anomaly")
                for row_i, r in enumerate((normal, anomaly)):
                    wave, sr = sf.read(Path(tmp) / r["path"], dtype="float32")
                    mel = _LOGMEL(wave, sr)
                    ax = axes[row_i, col]
                    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=(0, len(wave) / sr, 0, mel.shape[0]))
                    what = "normal" if r["label"] == "normal" else f"{r['anomaly_kind']} (severity {float(r['severity']):.2f})"
                    ax.set_title(f"{domain}: {what}\nspd {r['spd']}, load {r['load']}, mic {r['mic']}, background {r['noise']}", fontsize=9)
                    ax.set_xlabel("time (s)") if row_i == 1 else None
                    ax.set_ylabel("mel band") if col == 0 else None
            fig.suptitle(f"{machine}, section 00 (seed {seed}): log-mel, 128 bands")
            fig.tight_layout()
            path = fig_dir / f"{machine}.png"
            fig.savefig(path, dpi=72)
            plt.close(fig)
            _shrink_png(path)
            written.append(path)
    return written


def _shrink_png(path: Path, colors: int = 96) -> None:
    """Re-save a PNG with a palette of ``colors`` (about 4x smaller, no visible change)."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors)
    small.save(path, optimize=True)


# --- report ----------------------------------------------------------------------------------------


def _hmean(values: list[float]) -> float:
    v = np.maximum(np.asarray(values), np.finfo(float).eps)
    return float(len(v) / np.sum(1.0 / v))


def report(results: list[dict], kinds: list[dict], shifts: dict) -> str:
    lines = []
    head = "| machine | section | shift | domain | " + " | ".join(f"{m} AUC / pAUC" for m in METHODS) + " | shift AUC |"
    sep = "|---" * (5 + len(METHODS)) + "|"
    lines += [head, sep]
    for r in results:
        cells = " | ".join(f"{r[m][0]:.3f} / {r[m][1]:.3f}" for m in METHODS)
        shift_auc = f"{r['shift_auc']:.3f}" if "shift_auc" in r else ""
        lines.append(
            f"| {r['machine']} | {r['section']:02d} | {shifts.get((r['machine'], r['section']), '')} | {r['domain']} | {cells} | {shift_auc} |"
        )
    lines += ["", "Harmonic means over sections (AUC / pAUC):", "", "| machine | domain | " + " | ".join(METHODS) + " |", "|---" * (2 + len(METHODS)) + "|"]
    for m in dict.fromkeys(r["machine"] for r in results):
        for d in ("source", "target"):
            sub = [r for r in results if r["machine"] == m and r["domain"] == d]
            cells = " | ".join(f"{_hmean([r[x][0] for r in sub]):.3f} / {_hmean([r[x][1] for r in sub]):.3f}" for x in METHODS)
            lines.append(f"| {m} | {d} | {cells} |")
    for d in ("source", "target"):
        sub = [r for r in results if r["domain"] == d]
        cells = " | ".join(f"{_hmean([r[x][0] for r in sub]):.3f} / {_hmean([r[x][1] for r in sub]):.3f}" for x in METHODS)
        lines.append(f"| all | {d} | {cells} |")
    lines += ["", "Source-domain kNN AUC per fault kind (normal clips vs clips of that kind, mean over sections):", ""]
    lines += ["| machine | " + " | ".join(["kind", "AUC"]) + " |", "|---|---|---|"]
    for m in dict.fromkeys(k["machine"] for k in kinds):
        for kd in dict.fromkeys(k["kind"] for k in kinds if k["machine"] == m):
            vals = [k["auc"] for k in kinds if k["machine"] == m and k["kind"] == kd]
            lines.append(f"| {m} | {kd} | {np.mean(vals):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="a generated synthetic folder (else render in memory)")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--machines", nargs="*")
    ap.add_argument("--sections", type=int)
    ap.add_argument("--n-source-train", type=int)
    ap.add_argument("--n-test-per-class", type=int)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    ap.add_argument("--figures", type=Path, help="only draw spectrogram pictures into this folder")
    args = ap.parse_args(argv)

    if args.figures is not None:
        for path in draw_figures(args.figures, args.seed, args.machines):
            print(path)
        return

    start = time.perf_counter()
    if args.data is not None:
        rows, feats = load_folder(args.data, args.machines, args.workers)
        import json

        meta = json.loads((args.data / "synthetic.json").read_text())
        shifts = {(m, int(s)): v["shift"] for m, mv in meta["machines"].items() for s, v in mv["sections"].items()}
        source = f"folder {args.data} (preset {meta['preset']}, seed {meta['seed']})"
    else:
        preset = synthetic.resolve_preset(
            args.preset, args.machines, sections=args.sections, n_source_train=args.n_source_train,
            n_test_per_class=args.n_test_per_class, duration=args.duration,
        )  # fmt: skip
        rows, feats = render_memory(preset, args.seed, args.workers)
        shifts = {k: v["shift"] for k, v in synthetic.plan_sections(args.seed, preset.machines, preset.sections).items()}
        source = f"in memory: {replace(preset)}, seed {args.seed}"
    results, kinds = evaluate(rows, feats, args.seed)
    text = f"Data: {source}; features: mean log-mel ({_logmel_fn()[1]}); {time.perf_counter() - start:.0f} s\n\n"
    text += report(results, kinds, shifts)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
