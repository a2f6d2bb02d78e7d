"""One grid cell: the staged pipeline of one (approach, machine type, seed) in its experiment folder,
as a Ray task runs it (or any process: :func:`run_cell` needs no Ray).

A cell runs every stage of the table through :func:`hybrid_asd.pipeline.run_stage`, which skips the
stages completed with the same config, so a retried or re-run cell continues where it stopped. Its
log goes to ``<exp>/logs/grid.log``; ``<exp>/grid_cell.json`` records where and when it ran
(host, process, Ray node, attempt of this grid run, device, wall time): the driver reads it to
count running cells, and a finished cell's row takes its wall time and device from it.

Input errors (:class:`~hybrid_asd.errors.HybridASDError`: a bad config, missing or corrupt data)
fail the cell at once, with no retry: retrying cannot fix them. Any other exception, and a worker
process that dies, are left to Ray, which retries the task (``max_retries``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from hybrid_asd.config import Config
from hybrid_asd.ensemble.fusion import FUSED_NAME
from hybrid_asd.errors import HybridASDError
from hybrid_asd.experiment import Experiment
from hybrid_asd.grid.spec import Cell
from hybrid_asd.pipeline import run_stage
from hybrid_asd.stages import STAGES
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_write_json, resolve_device, seed_everything, thread_limit

log = logging.getLogger(__name__)

# results.csv: one row per cell, these columns in this order.
ROW_COLUMNS = ("approach", "machine", "seed", "status", "official_score", "source_auc", "source_pauc",
               "target_auc", "target_pauc", "wall_s", "attempts", "device", "host", "node", "finished", "exp",
               "log", "error")
METRICS = ("official_score", "source_auc", "source_pauc", "target_auc", "target_pauc")
DONE, FAILED, RUNNING = "done", "failed", "running"


@dataclass(frozen=True)
class CellJob:
    """What the driver sends to a cell's task: plain data, picklable, no open files."""

    cell: Cell
    exp_root: str
    config: dict[str, Any]  # the resolved config (Config.to_dict()); validated again in the worker
    overwrite: bool
    cpus: float
    run_id: str  # this grid run; attempts are counted per run
    gpus: float = 0.0  # the cell's Ray GPUs; none: the stages run on the CPU (see cell_device)

    @property
    def experiment(self) -> Experiment:
        return self.cell.experiment(self.exp_root)


# --- the task ---------------------------------------------------------------------------------------
def run_cell(job: CellJob) -> dict[str, Any]:
    """Run ``job``'s cell to completion and return its results row (status ``done``, or ``failed``
    for an input error). Other exceptions propagate (Ray retries them)."""
    threads = cell_threads(job.cpus)
    exp = job.experiment
    started = time.perf_counter()
    record = start_record(exp, job)
    # a Ray worker runs many cells and has loaded BLAS/OpenMP before: limit those too, not only torch
    with cell_log(exp.log_path("grid")), thread_limit(threads):
        log.info("grid cell %s (run %s, attempt %d, %d thread(s)) on %s", job.cell.key, job.run_id,
                 record["attempt"], threads, record["host"])
        try:
            config = Config.parse(job.config, source=str(exp.config_path))
            device = run_all_stages(exp, config, overwrite=job.overwrite, device=cell_device(config, job.gpus))
        except HybridASDError as exc:
            log.error("%s", exc)
            record = finish_record(exp, record, FAILED, time.perf_counter() - started, error=str(exc))
            return failed_row(job.cell, exp, str(exc), record)
        except Exception:
            log.exception("grid cell %s: attempt %d failed (Ray retries it while retries are left)", job.cell.key,
                          record["attempt"])
            raise
        record = finish_record(exp, record, DONE, time.perf_counter() - started, device=device)
        row = result_row(job.cell, exp, config, record)
        log.info("grid cell %s done in %.1f s: official score %s", job.cell.key, record["wall_s"],
                 format_value(row["official_score"]))
    return row


def run_all_stages(exp: Experiment, config: Config, *, overwrite: bool, device: str | None = None) -> str:
    """Every stage of the table, each skipped when complete; returns the device the stages used."""
    device = resolve_device(device or config.device)
    seed_everything(config.seed)
    exp.init(config, overwrite=overwrite)
    for stage in STAGES:
        run_stage(exp, config, stage, device=device, progress=False)
    return device


def cell_device(config: Config, gpus: float) -> str:
    """The device of a cell: the config's, except that ``auto`` means the CPU for a cell that asked
    Ray for no GPU. Ray (2.x) leaves ``CUDA_VISIBLE_DEVICES`` alone for such a task, so ``auto``
    would pick a GPU that Ray does not account for and that other cells share."""
    if gpus <= 0 and config.device == "auto":
        return "cpu"
    return config.device


def cell_threads(cpus: float) -> int:
    """The cell's thread count (its CPUs, at least 1), also set in the environment for any process it
    starts; the runtimes already loaded in this worker are limited by ``thread_limit`` in
    :func:`run_cell`. Ray also passes ``OMP_NUM_THREADS`` in the task's environment (runner)."""
    threads = max(1, int(cpus))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    return threads


@contextmanager
def cell_log(path: Path) -> Iterator[None]:
    """Send the package's log records (INFO and up) to ``path`` while the block runs; a worker
    process runs many cells one after another, so the handler is removed afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("hybrid_asd")
    old_level = package.level
    package.setLevel(logging.INFO)
    package.addHandler(handler)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(old_level)
        handler.close()


# --- the cell record (grid_cell.json) ------------------------------------------------------------------
def read_record(exp: Experiment) -> dict[str, Any] | None:
    """The cell record, or None when there is none or it cannot be read."""
    try:
        data = json.loads(exp.grid_record_path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def start_record(exp: Experiment, job: CellJob) -> dict[str, Any]:
    previous = read_record(exp) or {}
    attempt = int(previous.get("attempt", 0)) + 1 if previous.get("run_id") == job.run_id else 1
    record = {"cell": job.cell.key, "status": RUNNING, "run_id": job.run_id, "attempt": attempt,
              "started": now(), **where_am_i()}
    atomic_write_json(exp.grid_record_path, record)
    return record


def finish_record(exp: Experiment, record: dict[str, Any], status: str, wall_s: float, *,
                  device: str | None = None, error: str | None = None) -> dict[str, Any]:
    record = {**record, "status": status, "finished": now(), "wall_s": round(wall_s, 3)}
    if device is not None:
        gpus = record.get("gpus") or []
        record["device"] = device + (f" (GPU {','.join(map(str, gpus))})" if gpus and device != "cpu" else "")
    if error is not None:
        record["error"] = error
    atomic_write_json(exp.grid_record_path, record)
    return record


def where_am_i() -> dict[str, Any]:
    """Host, process, and the Ray node and GPUs when running as a Ray task."""
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "node": "", "gpus": []}
    try:
        import ray  # lazy, optional: the grid extra; a cell also runs without Ray (benchmarks, tests)
    except ImportError:
        return info
    if ray.is_initialized():
        info["node"] = ray.get_runtime_context().get_node_id()
        info["gpus"] = [str(g) for g in ray.get_gpu_ids()]
    return info


# --- the results row -------------------------------------------------------------------------------------
def result_row(cell: Cell, exp: Experiment, config: Config, record: dict[str, Any] | None) -> dict[str, Any]:
    """The row of a complete cell: the official score and per-domain AUC/pAUC of the approach's
    system output (the experiment's fused scores, as the recipes submit), and from ``record``
    (when it describes this completion) the wall time, attempts, device and where it ran."""
    row = empty_row(cell, exp, DONE)
    row.update(system_metrics(exp, config))
    if record is not None and record.get("status") == DONE:
        row.update({k: record.get(k, "") for k in ("wall_s", "attempt", "device", "host", "node", "finished")})
        row["attempts"] = row.pop("attempt")
    return row


def failed_row(cell: Cell, exp: Experiment, error: str, record: dict[str, Any] | None = None) -> dict[str, Any]:
    row = empty_row(cell, exp, FAILED)
    row["error"] = " ".join(error.split())[:500]
    if record is not None:
        row.update({k: record.get(k, "") for k in ("wall_s", "host", "node", "finished")})
        row["attempts"] = record.get("attempt", "")
    return row


def empty_row(cell: Cell, exp: Experiment, status: str) -> dict[str, Any]:
    row: dict[str, Any] = {column: "" for column in ROW_COLUMNS}
    row.update({"approach": cell.approach, "machine": cell.machine, "seed": cell.seed, "status": status,
                "exp": str(exp.root), "log": str(exp.log_path("grid"))})
    for metric in METRICS:
        row[metric] = math.nan
    return row


def system_metrics(exp: Experiment, config: Config) -> dict[str, float]:
    """Official score and source/target AUC and pAUC of ``fused/fused.csv``; NaN without labels."""
    # Lazy: the evaluator loads scikit-learn and scipy (seconds); the driver's light paths do not need it.
    from hybrid_asd.evaluation.metrics import evaluate_scores

    table = ScoreTable.from_csv(exp.fusion.fused, FUSED_NAME)
    if not any(c.split == "test" and c.label in ("normal", "anomaly") for c in table.clips):
        return {metric: math.nan for metric in METRICS}
    res = evaluate_scores(table, protocol=config.evaluation.protocol, max_fpr=config.evaluation.max_fpr)
    out = {"official_score": res.official_score}
    for domain, values in res.by_domain().items():
        out[f"{domain}_auc"], out[f"{domain}_pauc"] = values["auc"], values["pauc"]
    return out


def format_value(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


__all__ = ["CellJob", "METRICS", "ROW_COLUMNS", "cell_device", "cell_log", "failed_row", "cell_threads", "read_record",
           "result_row", "run_all_stages", "run_cell", "system_metrics"]
