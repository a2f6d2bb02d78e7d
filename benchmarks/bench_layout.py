"""Memory layout of the extractor's convolutions: NCHW (PyTorch's default) vs channels-last (NHWC), side by side.

    python benchmarks/bench_layout.py                         # tiny_cnn (demo width) and mobilenetv2_100, 1 thread
    python benchmarks/bench_layout.py --threads 2 --rounds 3

For each backbone it times our training loop (``train_one_epoch`` over ``make_loader``: real log-mel patches,
Adam, the softmax head) and the network's forward pass at extraction batch size, once per layout in each round,
the layouts alternating (NCHW first in odd rounds, NHWC first in even ones), so both see the same machine load;
it prints each round's seconds and the median ratio NCHW / NHWC (above 1: channels-last is faster). Both models
start from the same weights (``extractor.channels_last`` only converts them). Log-mels: 10 s synthetic clips of
``bench_extractor.write_clips`` through the official front end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_extractor.py: no busy-waiting on a shared CPU

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Subset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extractor import write_clips  # noqa: E402

from hybrid_asd.config import Config  # noqa: E402
from hybrid_asd.extractor import ddp  # noqa: E402
from hybrid_asd.extractor.backbones import build_model  # noqa: E402
from hybrid_asd.extractor.dataset import PatchDataset  # noqa: E402
from hybrid_asd.extractor.settings import ExtractorSettings  # noqa: E402
from hybrid_asd.extractor.train import make_loader, train_one_epoch  # noqa: E402
from hybrid_asd.features.cache import FeatureCache  # noqa: E402

# (backbone, its conf, training batch): the demo's network and the MobileNetV2 recipes'
NETWORKS = {
    "tiny_cnn": ({"channels": [16, 32, 64]}, 64),
    "mobilenetv2_100": ({}, 32),
}


def models(name: str, n_classes: int) -> dict[bool, torch.nn.Module]:
    """The same initial weights in both layouts."""
    conf, _ = NETWORKS[name]
    out = {}
    for layout in (False, True):
        torch.manual_seed(0)
        settings = ExtractorSettings.parse({"backbone": {"name": name, "conf": conf}, "embedding_dim": 64,
                                            "channels_last": layout})
        out[layout] = build_model(settings, n_classes)
    return out


def train_seconds(model: torch.nn.Module, loader) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    start = time.perf_counter()
    train_one_epoch(model, model, loader, opt, scaler, device="cpu", use_amp=False, mixup=0.0,
                    rng=np.random.default_rng(0), desc="", progress=False)
    return time.perf_counter() - start


@torch.inference_mode()
def forward_seconds(model: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    start = time.perf_counter()
    for b in range(0, len(x), batch):
        model.embed(x[b:b + batch])
    model.train()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the demo's experiments use 1)")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds per layout (alternating order)")
    parser.add_argument("--backbones", default="tiny_cnn,mobilenetv2_100", help=f"of {', '.join(NETWORKS)}")
    parser.add_argument("--batches", type=int, default=0,
                        help="training batches per round (default: 40 for tiny_cnn, 4 for mobilenetv2_100)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = Config()
    with tempfile.TemporaryDirectory() as tmp:
        clips = write_clips(Path(tmp) / "data", 24, 10.0)
        cache = FeatureCache(config.features, config.data, cache_dir=Path(tmp) / "cache")
        logmels = cache.get_many([c.path for c in clips], progress=False)
        dataset = PatchDataset(logmels, np.array([c.section for c in clips]), config.features.patch_frames,
                               config.features.patch_hop)
        print(f"torch {torch.__version__}, {args.threads} thread(s), {len(dataset)} patches of "
              f"{dataset.n_mels} x {dataset.frames}; seconds per round, NCHW / NHWC")
        for name in args.backbones.split(","):
            _, batch = NETWORKS[name]
            n_batches = args.batches or (40 if name == "tiny_cnn" else 4)
            subset = Subset(dataset, range(min(len(dataset), batch * n_batches)))
            loader, _ = make_loader(subset, batch, ddp.DistInfo(), shuffle=True, seed=0, num_workers=0)
            x = dataset.__getitems__(range(min(len(dataset), 4 * 256 if name == "tiny_cnn" else 256)))[0]
            nets = models(name, n_classes=3)
            for model in nets.values():  # warm-up: oneDNN builds its kernels per shape and layout
                train_seconds(model, [next(iter(loader))])
                forward_seconds(model, x[:256])
            train = {False: [], True: []}
            forward = {False: [], True: []}
            for r in range(args.rounds):
                for layout in ((False, True) if r % 2 == 0 else (True, False)):
                    train[layout].append(train_seconds(nets[layout], loader))
                    forward[layout].append(forward_seconds(nets[layout], x))
            for what, times, n in (("training", train, len(subset)), ("forward", forward, len(x))):
                ratio = np.median(np.asarray(times[False]) / np.asarray(times[True]))
                print(f"{name:<16} {what:<9} batch {batch if what == 'training' else 256:>3}, {n} patches: "
                      f"NCHW {' '.join(f'{t:.2f}' for t in times[False])} | NHWC "
                      f"{' '.join(f'{t:.2f}' for t in times[True])} | NCHW/NHWC {ratio:.2f}x")


if __name__ == "__main__":
    main()
