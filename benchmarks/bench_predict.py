"""Scoring throughput of a trained system on new recordings: WAV file to fused score and decision.

    python benchmarks/bench_predict.py                    # tiny_cnn and mobilenetv2_100, 10 s clips
    python benchmarks/bench_predict.py --backbones tiny_cnn --clips 32
    python benchmarks/bench_predict.py --systems serial   # the serial hybrid alone (kNN on the embeddings)

For each backbone it trains the ``demo_hybrid`` approach (OE score + kNN on the embeddings +
Mahalanobis on log-mel statistics, z-normalised weighted sum: the demo's parallel/serial hybrid) for
ONE epoch on a small synthetic set of 10 s clips (``tiny`` preset, fan, 2 sections, duration 10 s;
scoring speed does not depend on how well the weights are trained), then times
``load_system(exp).score(...)`` on its WAV test clips, for each of ``--systems``:

- ``parallel``: the experiment's own fusion (OE + kNN + Mahalanobis);
- ``serial``: the deployed serial hybrid, the kNN on the embeddings alone (the same experiment loaded with a
  weights file whose ``ensemble.members`` is ``[knn]``): its steps are read, log-mel, network (extractor:
  embeddings and the OE score it computes with them) and kNN (the ``detectors`` step, the kNN only);

- throughput: all ``--clips`` test clips in batches of ``--batch`` (best of ``--repeat`` runs after a
  warm-up), clips/s and the share of each step (audio read, log-mel, extractor, detectors, fusion
  with thresholds);
- latency: one clip per call (the ``--watch`` case), median over ``--single`` clips after a warm-up,
  with the same step shares.

Models are loaded before timing (``System.load``). Everything runs on the CPU with torch's default
threads (2 on the project's machines).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it (shared cores)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from hybrid_asd.config import load_config  # noqa: E402
from hybrid_asd.data.synthetic import generate  # noqa: E402
from hybrid_asd.experiment import Experiment  # noqa: E402
from hybrid_asd.monitor.system import STEPS, load_system  # noqa: E402
from hybrid_asd.pipeline import run_stages  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "hybrid_asd" / "configs" / "demo_hybrid.yaml"


def train_system(root: Path, data: Path, backbone: str) -> Experiment:
    overrides = [f"data.root={data}", "data.machine=fan", "seed=0", "device=cpu", "extractor.epochs=1",
                 f"extractor.backbone.name={backbone}", "extractor.backbone.conf={}", "extractor.target_oversample=1",
                 "extractor.max_patches_per_clip=4", "extractor.batch_size=32"]
    exp = Experiment(root / backbone)
    run_stages(exp, load_config(CONFIG, overrides), progress=False)
    return exp


def shares(seconds: dict[str, float]) -> str:
    total = sum(seconds.values()) or 1.0
    return ", ".join(f"{step} {100 * seconds[step] / total:.0f}%" for step in STEPS)


SERIAL_MEMBERS = "ensemble:\n  members: [knn]\n"  # the serial hybrid: the kNN on the embeddings alone


def bench(exp: Experiment, clips: list[Path], batch: int, repeat: int, single: int,
          extract_batch: int | None, weights: Path | None = None) -> dict[str, str]:
    system = load_system(exp.root, device="cpu", weights=weights).load()
    if extract_batch is not None:  # patches per extractor forward; predict uses extractor.extract_batch_size
        system.sources[0].embedder().batch_size = extract_batch
    system.score(clips[:batch], batch_size=batch)  # warm-up (oneDNN primitives, FAISS, first allocations)
    best, best_steps = float("inf"), {}
    for _ in range(repeat):
        system.timer.seconds = dict.fromkeys(STEPS, 0.0)
        start = time.perf_counter()
        system.score(clips, batch_size=batch)
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, best_steps = elapsed, dict(system.timer.seconds)
    system.score(clips[0])  # warm-up of the one-clip shapes
    system.timer.seconds = dict.fromkeys(STEPS, 0.0)
    latencies = []
    for clip in clips[:single]:
        start = time.perf_counter()
        system.score(clip)
        latencies.append(time.perf_counter() - start)
    return {
        "clips/s": f"{len(clips) / best:.1f}",
        "throughput steps": shares(best_steps),
        "latency ms": f"{1000 * statistics.median(latencies):.0f}",
        "latency steps": shares(system.timer.seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["tiny_cnn", "mobilenetv2_100"])
    parser.add_argument("--clips", type=int, default=48, help="test clips scored per throughput run")
    parser.add_argument("--batch", type=int, default=64, help="clips per batch (predict --batch-size)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--single", type=int, default=10, help="clips timed one at a time")
    parser.add_argument("--extract-batch", type=int, nargs="+", default=[0],
                        help="patches per extractor forward to try (0: the config's extract_batch_size, 256)")
    parser.add_argument("--systems", nargs="+", choices=("parallel", "serial"), default=["parallel", "serial"],
                        help="parallel: OE + kNN + Mahalanobis fused; serial: the kNN on the embeddings alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["HYBRID_ASD_CACHE"] = str(root / "cache")
        data = root / "data"
        generate(data, preset="tiny", machines=["fan"], duration=10.0, n_test_per_class=12, progress=False)
        serial = root / "serial_weights.yaml"
        serial.write_text(SERIAL_MEMBERS)
        load = os.getloadavg()[0]
        rows = []
        for backbone in args.backbones:
            exp = train_system(root / "exp", data, backbone)
            clips = [c.path for c in exp.test_clips()][: args.clips]
            for system in args.systems:
                for eb in args.extract_batch:
                    label = f"{system}: {backbone}, extractor batch {eb or 'config (256)'}"
                    rows.append((label, len(clips), bench(exp, clips, args.batch, args.repeat, args.single, eb or None,
                                                          weights=serial if system == "serial" else None)))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; 1-min load before: {load:.1f}, "
              f"after: {os.getloadavg()[0]:.1f}")
        print("Steps: audio = read, logmel = log-mel, extractor = network, detectors = the inlier models (serial: the kNN "
              "alone), fusion = z-normalisation, fusion rule and thresholds.")
        print("| system | clips | clips/s (batch) | steps (batch) | latency, 1 clip (median) | steps (1 clip) |")
        print("|---|---|---|---|---|---|")
        for backbone, n, r in rows:
            print(f"| {backbone} | {n} | {r['clips/s']} | {r['throughput steps']} | {r['latency ms']} ms | "
                  f"{r['latency steps']} |")


if __name__ == "__main__":
    main()
