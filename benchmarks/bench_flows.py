"""Normalizing-flow libraries: zuko vs nflows for the same MAF inside hybrid_asd's FlowDetector.

    python benchmarks/bench_flows.py                      # 5000 x 128, MAF 5 x (128, 128), 5 epochs
    python benchmarks/bench_flows.py --rows 2000 --epochs 2 --threads 1

Both libraries build the same network (FlowDetector: ``transforms`` MADE layers with
``hidden_layers`` x ``hidden_features`` ReLU units, order reversed between layers; affine
transforms), get the same standardised data, seed, batches and Adam settings. Timed: ``fit``
(all epochs) and ``decision_function`` on the same rows; parameter counts and final training loss
are printed so that the comparison is like for like. Data: a correlated Gaussian (random
linear map of white noise), fixed seed. Set --device cuda to time on a GPU.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--transforms", type=int, default=5)
    parser.add_argument("--hidden-features", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--conditional", action="store_true", help="condition on 4 synthetic sections")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=2, help="repeats of each timing (best kept)")
    args = parser.parse_args()

    import torch

    from hybrid_asd.detectors import build_detector

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(args.rows, args.dim)) @ rng.normal(size=(args.dim, args.dim)) / np.sqrt(args.dim)).astype(np.float32)
    cond = rng.integers(0, 4, size=args.rows) if args.conditional else None
    conf = {
        "model": "maf", "transforms": args.transforms, "hidden_features": args.hidden_features,
        "hidden_layers": 2, "conditional": args.conditional, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": 1e-3, "seed": 0, "device": args.device,
    }
    print(f"torch {torch.__version__}, {args.rows} x {args.dim}, MAF {args.transforms} x "
          f"({args.hidden_features}, {args.hidden_features}), {args.epochs} epochs, batch {args.batch_size}, "
          f"conditional {args.conditional}, device {args.device}, threads {torch.get_num_threads()}")
    results = {}
    for library in ("zuko", "nflows"):
        fit_times, score_times = [], []
        for _ in range(args.repeat):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                det = build_detector("flow", {**conf, "library": library})
                start = time.perf_counter()
                det.fit(X, cond)
                fit_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                scores = det.decision_function(X, cond)
                score_times.append(time.perf_counter() - start)
        n_params = sum(p.numel() for p in det.module_.parameters())
        results[library] = (min(fit_times), min(score_times))
        print(f"{library:>7}: fit {min(fit_times):7.2f} s  score {min(score_times):6.3f} s "
              f"({args.rows / min(score_times):8.0f} rows/s)  params {n_params}  "
              f"final loss {det.final_loss_:.3f}  mean NLL {scores.mean():.2f}")
    (fz, sz), (fn, sn) = results["zuko"], results["nflows"]
    print(f"ratio nflows/zuko: fit {fn / fz:.2f}x, score {sn / sz:.2f}x")


if __name__ == "__main__":
    main()
