"""Feature-extractor throughput on the CPU: training (patches/s) and extraction (clips/s).

    python benchmarks/bench_extractor.py                       # 2 threads, 10 s clips
    python benchmarks/bench_extractor.py --steps 3 --extract-clips 16   # quicker

For each backbone (mobilenetv2_100, tiny_cnn) and batch size (32, 128) it times, side by side:

- "model only": forward + backward + Adam step on tensors already in memory (the reference:
  the network's own speed, no data handling; median step time);
- "loader only": iterating our DataLoader (patch gather from the in-memory log-mels), no model;
- "pipeline": our training loop (``train_one_epoch``: loader + model + optimiser) over the
  same number of patches; the ratio pipeline / model-only shows what data handling costs.

Extraction: ``extract`` (cache reads + patching + model + aggregation) against the model alone
on pre-made patches, and the feature-cache reads alone. Log-mels come from a FeatureCache filled
before timing (10 s synthetic WAVs: tones + noise, 16 kHz, official front end, 32 patches/clip).
Each figure is the best of ``--repeat`` timed runs after a warm-up (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

# Before torch starts OpenMP: on a shared CPU, OpenMP's default busy-waiting collapsed 2-thread
# training about 12x (3.3 vs 41 MobileNetV2 patches/s) whenever other processes ran; set
# OMP_WAIT_POLICY=ACTIVE to measure the default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Subset  # noqa: E402

from hybrid_asd.config import Config  # noqa: E402
from hybrid_asd.data.clips import Clip  # noqa: E402
from hybrid_asd.extractor import ddp  # noqa: E402
from hybrid_asd.extractor.backbones import build_model  # noqa: E402
from hybrid_asd.extractor.checkpoint import make_meta, save_checkpoint  # noqa: E402
from hybrid_asd.extractor.dataset import PatchDataset  # noqa: E402
from hybrid_asd.extractor.embed import extract  # noqa: E402
from hybrid_asd.extractor.settings import ExtractorSettings  # noqa: E402
from hybrid_asd.extractor.train import make_loader, train_one_epoch  # noqa: E402
from hybrid_asd.features.cache import FeatureCache  # noqa: E402
from hybrid_asd.features.patches import make_patches  # noqa: E402


def write_clips(root: Path, n: int, seconds: float, sr: int = 16000) -> list[Clip]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    clips = []
    for i in range(n):
        section = i % 3
        path = root / "fan" / "train" / f"section_{section:02d}_source_train_normal_{i:04d}_a_0.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        f0 = 100.0 * (section + 1) + rng.uniform(-5, 5)
        y = sum(0.05 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)) + rng.normal(0, 0.02, t.size)
        sf.write(path, y.astype(np.float32), sr, subtype="PCM_16")
        clips.append(Clip(path, "fan", section, "source", "train", "normal"))
    return clips


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` calls (the machine is shared: the minimum is the least disturbed)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def model_only_rate(model, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Training steps per second on one pre-gathered batch, times the batch size."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    batch = len(x)

    def step():
        _, logits = model(x, y)
        loss = model.head.loss_from_logits(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    step()  # warm-up (oneDNN builds its kernels per input shape)
    times = [timed(step) for _ in range(steps)]
    return batch / float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-clips", type=int, default=24, help="10 s clips in the training cache")
    parser.add_argument("--extract-clips", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per configuration")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per measurement; the best is reported")
    parser.add_argument("--backbones", default="mobilenetv2_100,tiny_cnn")
    parser.add_argument("--batches", default="32,128")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = Config()
    fconf = config.features
    frames = fconf.patch_frames

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clips = write_clips(root / "data", max(args.train_clips, args.extract_clips), args.seconds)
        cache = FeatureCache(fconf, config.data, cache_dir=root / "cache")
        paths = [c.path for c in clips]
        t_fill = timed(lambda: cache.ensure(paths, progress=False))
        t_read = timed(lambda: cache.get_many(paths, progress=False), args.repeat)
        logmels = cache.get_many(paths[: args.train_clips], progress=False)
        print(f"torch {torch.__version__}, {args.threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; "
              f"{len(paths)} clips of {args.seconds:.0f} s, "
              f"log-mel {logmels[0].shape}")
        print(f"feature cache: fill (log-mel compute) {len(paths) / t_fill:8.1f} clips/s; "
              f"read (cache hit) {len(paths) / t_read:8.1f} clips/s")
        t0 = time.perf_counter()
        dataset = PatchDataset(logmels, np.array([c.section for c in clips[: args.train_clips]]), frames,
                               fconf.patch_hop)
        print(f"patch index build: {time.perf_counter() - t0:.3f} s for {len(dataset)} patches")

        print("\ntraining throughput (patches/s)")
        print(f"{'backbone':<16}{'batch':>6}{'model only':>12}{'loader only':>13}{'pipeline':>10}{'pipe/model':>12}")
        for name in args.backbones.split(","):
            for batch in [int(b) for b in args.batches.split(",")]:
                conf = ExtractorSettings.parse({"backbone": {"name": name, "conf": {}}, "batch_size": batch})
                torch.manual_seed(0)
                # real log-mel patches, gathered beforehand (random inputs run at other speeds on the CPU)
                x_ref, y_ref = dataset.__getitems__(range(batch))
                ref = model_only_rate(build_model(conf, 3), x_ref, y_ref, args.steps)
                subset = Subset(dataset, range(min(len(dataset), batch * (args.steps + 1))))
                loader, _ = make_loader(subset, batch, ddp.DistInfo(), shuffle=True, seed=0, num_workers=0)
                t_load = timed(lambda: [None for _ in loader], args.repeat)
                model = build_model(conf, 3)
                opt = torch.optim.Adam(model.parameters(), lr=1e-5)
                scaler = torch.amp.GradScaler("cuda", enabled=False)
                run = lambda: train_one_epoch(  # noqa: E731
                    model, model, loader, opt, scaler, device="cpu", use_amp=False, mixup=0.0,
                    rng=np.random.default_rng(0), desc="", progress=False)
                t_pipe = timed(run, args.repeat)
                n = len(subset)
                print(f"{name:<16}{batch:>6}{ref:>12.1f}{n / t_load:>13.0f}{n / t_pipe:>10.1f}"
                      f"{(n / t_pipe) / ref:>12.2f}")

        print("\nextraction throughput (clips/s, 10 s clips, 32 patches each, batch 256)")
        print(f"{'backbone':<16}{'model only':>12}{'extract()':>11}{'ratio':>8}{'cache read':>12}")
        ext = clips[: args.extract_clips]
        for name in args.backbones.split(","):
            conf = ExtractorSettings.parse({"backbone": {"name": name, "conf": {}}})
            torch.manual_seed(0)
            model = build_model(conf, 3).eval()
            sections = ["fan/section_00", "fan/section_01", "fan/section_02"]
            meta = make_meta(train_paths=paths, seed=0, classes=sections, class_to_section=[0, 1, 2], sections=sections,
                             input="patches", patch_frames=frames, patch_hop=fconf.patch_hop)
            ckpt = save_checkpoint(root / f"{name}.pt", model.state_dict(),
                                   {"extractor": conf, "features": fconf}, meta)
            ext_mels = cache.get_many([c.path for c in ext], progress=False)
            x = torch.from_numpy(np.concatenate([make_patches(m, frames, fconf["patch_hop"]) for m in ext_mels]))
            x = x.unsqueeze(1)  # the same patches extract() sees, gathered beforehand

            def model_only():
                with torch.inference_mode():
                    for b in range(0, len(x), 256):
                        xb = x[b:b + 256]
                        model.head.anomaly_scores(model.embed(xb), torch.zeros(len(xb), dtype=torch.long))

            model_only()  # warm-up
            t_model = timed(model_only, args.repeat)
            t_extract = timed(lambda: extract(ckpt, ext, cache, progress=False), args.repeat)
            t_read = timed(lambda: cache.get_many([c.path for c in ext], progress=False), args.repeat)
            print(f"{name:<16}{len(ext) / t_model:>12.1f}{len(ext) / t_extract:>11.1f}{t_model / t_extract:>8.2f}"
                  f"{len(ext) / t_read:>12.0f}")


if __name__ == "__main__":
    main()
