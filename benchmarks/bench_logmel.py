"""Log-mel throughput: hybrid_asd's batched torch LogMel vs librosa one clip at a time.

    python benchmarks/bench_logmel.py            # 1000 ten-second 16 kHz clips
    python benchmarks/bench_logmel.py --n 200    # shorter run on a busy machine

Clips are synthetic (harmonics + noise), generated in memory batch by batch with a fixed
seed, outside the timed regions; both sides see the same clips. librosa runs the official
baselines' recipe (melspectrogram with pad_mode="reflect", then 10 * log10(mel + eps)).
Threading is left at each library's default (leave OMP_NUM_THREADS unset).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from hybrid_asd.features.logmel import LogMel


def synthetic_batch(batch_index: int, size: int, n_samples: int, sample_rate: int) -> np.ndarray:
    """``size`` clips of machine-like sound: a few harmonics with random pitch plus noise."""
    rng = np.random.default_rng(1000 + batch_index)
    t = np.arange(n_samples) / sample_rate
    base = rng.uniform(50.0, 400.0, size=(size, 1))
    tones = sum(rng.uniform(0.01, 0.1, (size, 1)) * np.sin(2 * np.pi * k * base * t) for k in range(1, 6))
    noise = rng.normal(0.0, rng.uniform(0.005, 0.05, (size, 1)), (size, n_samples))
    return np.clip(tones + noise, -1.0, 1.0).astype(np.float32)


def librosa_logmel(y: np.ndarray, sr: int, args: argparse.Namespace) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=args.n_fft, hop_length=args.hop_length, n_mels=args.n_mels, power=2.0,
        pad_mode="reflect",
    )
    return 10.0 * np.log10(mel + sys.float_info.epsilon)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="number of clips (default 1000)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-fft", type=int, default=1024)
    parser.add_argument("--hop-length", type=int, default=512)
    parser.add_argument("--n-mels", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="device for ours (cpu or cuda)")
    args = parser.parse_args()

    import librosa

    n_samples = int(args.seconds * args.sample_rate)
    module = LogMel(args.sample_rate, args.n_fft, args.hop_length, args.n_mels).to(args.device)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), librosa {librosa.__version__}, "
          f"numpy {np.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"device {args.device}")
    print(f"{args.n} clips x {args.seconds:g} s at {args.sample_rate} Hz, batch {args.batch_size}")

    warm = synthetic_batch(-1, 2, n_samples, args.sample_rate)
    with torch.no_grad():
        module(torch.from_numpy(warm).to(args.device))
    librosa_logmel(warm[0], args.sample_rate, args)

    t_ours = t_ref = 0.0
    max_diff = 0.0
    done = 0
    for batch_index in range((args.n + args.batch_size - 1) // args.batch_size):
        size = min(args.batch_size, args.n - done)
        waves = synthetic_batch(batch_index, size, n_samples, args.sample_rate)

        start = time.perf_counter()
        with torch.no_grad():
            ours = module(torch.from_numpy(waves).to(args.device)).cpu().numpy()
        t_ours += time.perf_counter() - start

        start = time.perf_counter()
        refs = [librosa_logmel(y, args.sample_rate, args) for y in waves]
        t_ref += time.perf_counter() - start

        max_diff = max(max_diff, max(float(np.abs(o - r).max()) for o, r in zip(ours, refs)))
        done += size

    ours_rate, ref_rate = done / t_ours, done / t_ref
    print(f"{'':28s}{'seconds':>10s}{'clips/s':>12s}")
    print(f"{'hybrid_asd LogMel (batched)':28s}{t_ours:10.2f}{ours_rate:12.1f}")
    print(f"{'librosa (one clip a time)':28s}{t_ref:10.2f}{ref_rate:12.1f}")
    print(f"speed-up ours / librosa: {ours_rate / ref_rate:.2f}x")
    print(f"max abs difference: {max_diff:.2e} dB")


if __name__ == "__main__":
    main()
