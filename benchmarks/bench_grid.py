"""Overhead of ``hybrid-asd grid`` (Ray start, scheduling, worker start-up, summary) against running the
same cells one after another in one process.

    python benchmarks/bench_grid.py                       # both workloads
    python benchmarks/bench_grid.py --workloads tiny --seeds 0 1 2

Workloads, on synthetic ``tiny`` data (fan and valve, 2 sections each; one data set, so every seed
reads the same clips), each 2 approach configs x 2 machine types x the seeds:

- ``tiny``: two approaches without an extractor (Mahalanobis, kNN on log-mel statistics): cells of about a
  second, where the overhead shows most;
- ``train``: ``demo_baselines`` and ``demo_hybrid`` with their small CNN extractor trained for 3 epochs
  (the AE baseline for 5): every stage does work (training, embedding, fitting), cells of a few seconds.

For each workload, with a warm feature cache (filled before any timing) and a fresh experiment root
per run, each run in a new Python process whose OpenMP/BLAS thread variables are set from the start
(as Ray sets them for a cell's worker):

1. sequential, 1 thread: the cells one after another through the library
   (``hybrid_asd.grid.cell.run_cell``: the same staged pipeline a grid cell runs);
2. grid on a local Ray instance of 1 CPU, ``--cpus-per-cell 1``: one cell at a time with 1 thread, the
   same work as 1, so the difference is the grid's overhead;
3. grid on 2 CPUs, ``--cpus-per-cell 1``: two cells at a time, 1 thread each (what the grid is for);
4. sequential, 2 threads, and 5. grid on 2 CPUs, ``--cpus-per-cell 2``: the same pair with 2 threads.

Phases of a grid run (timed in its process): planning (configs resolved and checked), Ray start, the
cells (submission to the last result), summary (results.csv, summary.md, per-seed tuned cross-approach
fusion), Ray shutdown. Also timed: the round trip of an empty Ray task on warm workers (scheduling alone).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it (shared cores)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local instance only
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "hybrid_asd" / "configs"

TINY = {
    "maha": "name: maha\nextractor: null\ndetectors:\n"
            "  - {name: mahalanobis, input: logmel_stats, adaptation: {mode: pooled}}\nensemble: {members: [mahalanobis]}\n",
    "knn": "name: knn\nextractor: null\ndetectors:\n"
           "  - {name: knn, input: logmel_stats, conf: {k: 1}, adaptation: {mode: domain_min}}\nensemble: {members: [knn]}\n",
}
TRAIN = {"demo_baselines": ["extractor.epochs=3", "detectors.0.conf.epochs=5"],
         "demo_hybrid": ["extractor.epochs=3"]}

SEQUENTIAL = """
import json, sys, time
t0 = time.perf_counter()
from hybrid_asd.grid.cell import CellJob, run_cell
from hybrid_asd.grid.spec import load_grid, plan
spec = load_grid(sys.argv[1])
walls = []
for p in plan(spec):
    row = run_cell(CellJob(p.cell, spec.exp_root, p.config.to_dict(), False, int(sys.argv[2]), "sequential"))
    assert row["status"] == "done", row
    walls.append(float(row["wall_s"]))
print(json.dumps({"total": time.perf_counter() - t0, "cells": walls}))
"""

GRID = """
import json, sys, time
t0 = time.perf_counter()
from hybrid_asd.grid import runner
from hybrid_asd.grid.spec import load_grid, plan
from hybrid_asd.grid.summary import write_results, write_summary
spec = load_grid(sys.argv[1])
t = {}
s = time.perf_counter(); planned = plan(spec); t["plan"] = time.perf_counter() - s
ray = runner.import_ray()
s = time.perf_counter(); runner.connect(ray, spec); t["ray_start"] = time.perf_counter() - s
s = time.perf_counter(); rows = runner.run_cells(planned, spec, lambda line: None); t["cells"] = time.perf_counter() - s
assert all(r["status"] == "done" for r in rows.values()), rows
ordered = [rows[p.cell] for p in planned]
s = time.perf_counter()
write_results(spec.files.results, ordered)
write_summary(spec, planned, ordered, spec.files, echo=lambda line: None)
t["summary"] = time.perf_counter() - s

@ray.remote(num_cpus=1)
def noop():
    return None

ray.get([noop.remote() for _ in range(4)])
s = time.perf_counter()
for _ in range(20):
    ray.get(noop.remote())
t["task_roundtrip"] = (time.perf_counter() - s) / 20
s = time.perf_counter(); ray.shutdown(); t["ray_stop"] = time.perf_counter() - s
t["total"] = time.perf_counter() - t0
t["cell_walls"] = [float(r["wall_s"]) for r in ordered]
print(json.dumps(t))
"""


def run_json(code: str, grid: Path, env: dict[str, str], *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, str(grid), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_grid(path: Path, configs: list[dict], seeds: list[int], data: Path, exp_root: Path, cpus: int,
               local_cpus: int = 2) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"configs": configs, "machines": ["fan", "valve"], "seeds": seeds,
                                    "data_root": str(data), "exp_root": str(exp_root), "cpus_per_cell": cpus,
                                    "local_cpus": local_cpus, "gpus_per_cell": 0}, sort_keys=False))
    return path


def threads_env(env: dict[str, str], threads: int) -> dict[str, str]:
    return {**env, **{v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}


def walls(values: list[float]) -> str:
    return " ".join(f"{v:.1f}" for v in values)


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def bench(workload: str, seeds: list[int], work: Path, data: Path, env: dict[str, str]) -> None:
    if workload == "tiny":
        configs = []
        for name, text in TINY.items():
            (work / f"{name}.yaml").write_text(text)
            configs.append({"config": str(work / f"{name}.yaml")})
    else:
        base = ["extractor.backbone.name=tiny_cnn", "extractor.max_patches_per_clip=8"]
        configs = [{"config": str(CONFIGS / f"{name}.yaml"), "set": base + extra} for name, extra in TRAIN.items()]
    n = len(configs) * 2 * len(seeds)
    # Warm the feature cache (keyed by file content and front end): every run below reads the same log-mels.
    run_json(SEQUENTIAL, write_grid(work / f"{workload}_warm.yaml", configs, seeds[:1], data,
                                    work / f"{workload}_warm", 1), threads_env(env, 1), "1")
    print(f"\n{workload}: {n} cells ({len(configs)} configs x 2 machine types x {len(seeds)} seed(s)); load {load()}")
    for threads, grids in ((1, ((1, 1), (2, 1))), (2, ((2, 2),))):
        name = f"{workload}_seq{threads}"
        seq = run_json(SEQUENTIAL, write_grid(work / f"{name}.yaml", configs, seeds, data, work / name, threads),
                       threads_env(env, threads), str(threads))
        print(f"  sequential, {threads} thread(s): total {seq['total']:.1f} s, cells {sum(seq['cells']):.1f} s "
              f"(mean {sum(seq['cells']) / n:.2f} s/cell: {walls(seq['cells'])}); load {load()}")
        for local_cpus, cpus in grids:
            name = f"{workload}_grid{local_cpus}x{cpus}"
            g = run_json(GRID, write_grid(work / f"{name}.yaml", configs, seeds, data, work / name, cpus, local_cpus),
                         env)
            print(f"  grid, Ray with {local_cpus} CPU(s), --cpus-per-cell {cpus}: total {g['total']:.1f} s = plan "
                  f"{g['plan']:.1f} + Ray start {g['ray_start']:.1f} + cells {g['cells']:.1f} + summary "
                  f"{g['summary']:.1f} + Ray stop {g['ray_stop']:.1f} (+ imports, the timing tasks); cell walls "
                  f"{sum(g['cell_walls']):.1f} s (mean {sum(g['cell_walls']) / n:.2f}: {walls(g['cell_walls'])}); "
                  f"empty task round trip {1000 * g['task_roundtrip']:.1f} ms; load {load()}")
            print(f"    vs sequential {threads} thread(s): total {g['total'] / seq['total']:.2f}x, cells phase "
                  f"{g['cells'] / seq['total']:.2f}x; per cell (total - sequential) / cells "
                  f"{(g['total'] - seq['total']) / n:+.2f} s, cells phase only {(g['cells'] - seq['total']) / n:+.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", choices=("tiny", "train"), default=["tiny", "train"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = parser.parse_args()
    from hybrid_asd.data.synthetic import generate

    with tempfile.TemporaryDirectory(prefix="bench_grid_") as tmp:
        work = Path(tmp)
        env = {**os.environ, "HYBRID_ASD_CACHE": str(work / "cache"),
               "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        generate(work / "data", preset="tiny", seed=0, progress=False)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s); tiny data: fan, valve")
        for workload in args.workloads:
            bench(workload, args.seeds, work, work / "data", env)


if __name__ == "__main__":
    main()
