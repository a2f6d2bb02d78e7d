"""Throughput and peak memory of the multibranch network on the CPU, per width.

    python benchmarks/bench_multibranch.py                          # 2 threads, 5 s clips, widths 16-128
    python benchmarks/bench_multibranch.py --seconds 10 --widths 128 --steps 3   # the full-size network

Each width runs in a fresh Python process (so that its peak resident memory is its own) and
reports:

- training clips/s: our training loop (``train_one_epoch``: CropDataset crops at random offsets,
  DataLoader, forward, sub-cluster AdaCos loss, backward, AdamW step, mixup on) over ``--steps``
  batches; the best of ``--repeat`` runs after a warm-up batch;
- extraction clips/s: ``embed`` + OE scores in eval mode on batches of 64 crops, best of ``--repeat``;
- peak RSS: the process's peak resident set size (``ru_maxrss``) after both, and the RSS before
  the network was built (Python + torch + the in-memory waveforms), so the difference is what the
  network, its activations and the optimiser took;
- the seconds one epoch of a demo machine type (609 training clips: 3 sections x (200 + 3)) would
  take at that rate.

Waveforms are synthetic (harmonic tones + noise, 16 kHz) and held in memory. The machine may be
shared: each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

# Before torch starts OpenMP: busy-waiting collapses 2-thread training on a shared CPU (see
# docs/benchmarks.md, "Feature extractor").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEMO_TRAIN_CLIPS = 609


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def child(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import Subset

    from hybrid_asd.extractor import ddp
    from hybrid_asd.extractor.backbones import build_model
    from hybrid_asd.extractor.settings import ExtractorSettings
    from hybrid_asd.extractor.train import make_loader, make_optimizer, train_one_epoch
    from hybrid_asd.extractor.waveforms import CropDataset

    torch.set_num_threads(args.threads)
    sr, n_clips = 16000, args.batch * (args.steps + 1)
    rng = np.random.default_rng(0)
    t = np.arange(int(args.seconds * sr)) / sr
    waves = [(0.1 * np.sin(2 * np.pi * (100 + 50 * (i % 3)) * t) + rng.normal(0, 0.02, t.size)).astype(np.float32)
             for i in range(n_clips)]
    labels = np.arange(n_clips) % 3
    conf = ExtractorSettings.parse({
        "backbone": {"name": "multibranch", "conf": {"clip_seconds": args.seconds, "width": args.width}},
        "input": "waveform", "embedding_dim": args.embedding_dim, "batch_size": args.batch, "mixup": 1.0,
        "head": {"name": "subcluster_adacos", "conf": {"n_subclusters": 16, "trainable_centres": True,
                                                        "adaptive_scale": False}},
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
    })
    rss_before = rss_mib()
    torch.manual_seed(0)
    model = build_model(conf, n_classes=3)
    n_params = sum(p.numel() for p in model.parameters())
    dataset = CropDataset(waves, labels, model.backbone.samples, seed=0)
    opt = make_optimizer(model, conf)
    scaler = torch.amp.GradScaler("cuda", enabled=False)

    def train(n_batches: int) -> float:
        subset = Subset(dataset, range(args.batch * n_batches))
        loader, _ = make_loader(subset, args.batch, ddp.DistInfo(), shuffle=True, seed=0, num_workers=0)
        start = time.perf_counter()
        train_one_epoch(model, model, loader, opt, scaler, device="cpu", use_amp=False, mixup=conf.mixup,
                        rng=np.random.default_rng(0), desc="", progress=False)
        return time.perf_counter() - start

    train(1)  # warm-up (oneDNN builds kernels per shape)
    t_train = min(train(args.steps) for _ in range(args.repeat))
    x, _ = dataset.__getitems__(range(args.batch * args.steps))
    model.eval()

    def extract_all() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for b in range(0, len(x), 64):
                emb = model.embed(x[b:b + 64])
                model.head.anomaly_scores(emb, torch.zeros(len(emb), dtype=torch.long))
        return time.perf_counter() - start

    extract_all()
    t_extract = min(extract_all() for _ in range(args.repeat))
    train_rate = args.batch * args.steps / t_train
    return {"width": args.width, "seconds": args.seconds, "batch": args.batch, "params": n_params,
            "train_clips_s": round(train_rate, 2), "extract_clips_s": round(len(x) / t_extract, 2),
            "rss_before_mib": round(rss_before), "peak_rss_mib": round(peak_rss_mib()),
            "demo_epoch_s": round(DEMO_TRAIN_CLIPS / train_rate, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="clip and crop length")
    parser.add_argument("--widths", default="16,32,64,128")
    parser.add_argument("--embedding-dim", type=int, default=0, help="0: 2 x width (as the cited 2 x 128)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="timed training batches per run")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.embedding_dim = args.embedding_dim or 2 * args.width
        print(json.dumps(child(args)))
        return
    print(f"{args.threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, {args.seconds:g} s clips, "
          f"batch {args.batch}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'width':>6}{'params':>10}{'train clips/s':>15}{'extract clips/s':>17}{'RSS before MiB':>16}"
          f"{'peak RSS MiB':>14}{'demo epoch s':>14}")
    for width in [int(w) for w in args.widths.split(",")]:
        cmd = [sys.executable, __file__, "--child", "--width", str(width), "--threads", str(args.threads),
               "--seconds", str(args.seconds), "--batch", str(args.batch), "--steps", str(args.steps),
               "--repeat", str(args.repeat), "--embedding-dim", str(args.embedding_dim)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"{r['width']:>6}{r['params']:>10,}{r['train_clips_s']:>15.1f}{r['extract_clips_s']:>17.1f}"
              f"{r['rss_before_mib']:>16}{r['peak_rss_mib']:>14}{r['demo_epoch_s']:>14.1f}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
