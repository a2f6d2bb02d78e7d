"""kNN scoring throughput: hybrid_asd's FAISS detector vs scikit-learn NearestNeighbors (brute).

    python benchmarks/bench_knn.py                                # banks of 1e3, 1e5, 1e6 rows
    python benchmarks/bench_knn.py --sizes 1000 100000 --queries 500 --threads 1

Both sides search the same bank with the same queries, the same metric (cosine by default:
ours = L2-normalise + ``IndexFlatIP``, sklearn = ``metric="cosine", algorithm="brute"``) and
the same k, and both return exact results (the script checks that the scores agree). Timed:
``decision_function`` (ours) vs ``kneighbors`` + the same mean (sklearn); build/fit times are
printed too. Data: random Gaussian float32 vectors, fixed seed, generated outside the timers.
``--threads`` caps OpenMP/BLAS threads of both sides (threadpoolctl and faiss.omp_set_num_threads).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--metric", choices=["cosine", "l2"], default="cosine")
    parser.add_argument("--threads", type=int, default=0, help="0 = library defaults")
    parser.add_argument("--repeat", type=int, default=3, help="repeats for banks below 1e6 rows")
    args = parser.parse_args()

    import faiss
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    from hybrid_asd.detectors import build_detector

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
        threadpool_limits(args.threads)
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    sk_metric = "cosine" if args.metric == "cosine" else "euclidean"
    print(f"faiss {faiss.__version__}, dim {args.dim}, {args.queries} queries, k={args.k}, "
          f"metric {args.metric}, threads {args.threads or 'default'}")
    header = f"{'bank':>9} {'fit ours s':>10} {'fit sk s':>9} {'ours q/s':>10} {'sklearn q/s':>11} {'ratio':>7} {'max|diff|':>9}"
    print(header)
    for size in args.sizes:
        bank = rng.normal(size=(size, args.dim)).astype(np.float32)
        repeat = args.repeat if size < 1_000_000 else 1
        ours = build_detector("knn", {"k": args.k, "metric": args.metric, "use_gpu": False})
        fit_ours, _ = timed(lambda: ours.fit(bank))
        ref = NearestNeighbors(n_neighbors=args.k, algorithm="brute", metric=sk_metric)
        fit_sk, _ = timed(lambda: ref.fit(bank))
        t_ours, s_ours = timed(lambda: ours.decision_function(queries), repeat)
        t_sk, (dist, _) = timed(lambda: ref.kneighbors(queries), repeat)
        s_sk = dist.mean(axis=1)
        diff = float(np.max(np.abs(np.asarray(s_ours) - s_sk)))
        q_ours, q_sk = args.queries / t_ours, args.queries / t_sk
        print(f"{size:>9} {fit_ours:>10.3f} {fit_sk:>9.3f} {q_ours:>10.0f} {q_sk:>11.0f} {q_ours / q_sk:>6.1f}x {diff:>9.1e}")
        del bank, ours, ref


if __name__ == "__main__":
    main()
