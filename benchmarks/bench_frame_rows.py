"""Peak memory of building the AE's frame-stacked training matrix: preallocated vs concatenated.

    python benchmarks/bench_frame_rows.py                 # 1,000 clips of 10 s (313 frames)
    python benchmarks/bench_frame_rows.py --clips 3000

Both sides turn the same list of log-mel matrices (float32, 128 x 313) into the
``(clips x 309, 640)`` float32 matrix of 5-frame stacks:
  - ours: ``hybrid_asd.detectors.stage.stacked_frame_rows`` (one preallocated array, filled per clip);
  - reference: the way it was built before (and the way the official baseline's loop builds it):
    a list of per-clip blocks, ``np.concatenate``, then ``astype(np.float32)``.
Measured with ``tracemalloc`` (numpy reports its buffers to it): the peak of new allocations above
the log-mels, and the wall time. Results are checked equal.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from hybrid_asd.detectors.stage import stacked_frame_rows
from hybrid_asd.features.patches import stack_frames


def concatenated(logmels: list[np.ndarray], n_frames: int) -> np.ndarray:
    blocks = [stack_frames(m, n_frames) for m in logmels]
    return np.concatenate(blocks).astype(np.float32)


def measure(fn) -> tuple[float, float, np.ndarray]:
    tracemalloc.start()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**30, seconds, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=313)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    logmels = [rng.normal(-40, 10, (128, args.frames)).astype(np.float32) for _ in range(args.clips)]
    ref_gib, ref_s, ref = measure(lambda: concatenated(logmels, 5))
    ours_gib, ours_s, ours = measure(lambda: stacked_frame_rows(logmels, 5).X)
    assert np.array_equal(ref, ours)
    result_gib = ours.nbytes / 2**30
    print(f"{args.clips} clips x {args.frames} frames -> matrix {ours.shape}, {result_gib:.2f} GiB")
    print(f"reference (blocks + concatenate + astype): peak {ref_gib:.2f} GiB, {ref_s:.2f} s")
    print(f"ours (preallocated):                       peak {ours_gib:.2f} GiB, {ours_s:.2f} s")
    print(f"ratio ours/reference: memory {ours_gib / ref_gib:.2f}, time {ours_s / ref_s:.2f}")


if __name__ == "__main__":
    main()
