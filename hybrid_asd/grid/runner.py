"""The grid's driver: plan the cells, run the missing ones as Ray tasks, write results and summary.

Ray does the scheduling, placement, resource accounting and retries (``num_cpus``/``num_gpus``,
``max_retries`` with ``retry_exceptions``, ``ray.wait``); this module only submits one task per
incomplete cell, reports progress and collects the rows. Cells whose stages are all complete are
not submitted at all, so re-running a finished grid starts no Ray instance and does no work.

Local by default: ``ray.init()`` starts a Ray instance on this machine with all its cores and GPUs
(``local_cpus`` limits the cores). With ``address`` the driver joins an existing cluster
(``auto``, ``HOST:PORT``, or ``ray://HOST:PORT`` through Ray Client); its nodes must see the same
experiment root and data (a shared filesystem) and have hybrid_asd installed. A process that is
connected to Ray already (``ray.init()`` called by a notebook or a test) keeps its connection.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml
from tqdm.auto import tqdm

from hybrid_asd.errors import ConfigError
from hybrid_asd.experiment import GridFiles
from hybrid_asd.grid.cell import (
    DONE, FAILED, RUNNING, CellJob, failed_row, finish_record, format_value, read_record, result_row, run_cell,
)
from hybrid_asd.grid.spec import GridSpec, PlannedCell, plan
from hybrid_asd.grid.summary import write_results, write_summary
from hybrid_asd.utils import atomic_write_text

log = logging.getLogger(__name__)

Echo = Callable[[str], None]
GRID_EXTRA = "pip install 'hybrid_asd[grid]'"
# A cell returns one small row; the local instance's object store needs little (Ray's default
# takes 30 % of the memory).
LOCAL_OBJECT_STORE_BYTES = 200 * 1024**2
WAIT_S = 2.0  # how often the running count is refreshed while no cell finishes
STATUS_EVERY_S = 60.0  # a count line at least this often while nothing finishes


@dataclass
class GridOutcome:
    """What a grid run did: every cell's row (planned order), and counts of this run."""

    files: GridFiles
    rows: list[dict[str, Any]]
    ran: int
    skipped: int
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] == FAILED]


def run_grid(spec: GridSpec, *, echo: Echo = print, progress: bool = True) -> GridOutcome:
    """Run every incomplete cell of ``spec``, then write ``results.csv`` and ``summary.md``.

    ``echo`` prints the progress lines (one per finished cell, with the live counts) and the summary;
    ``progress`` adds a progress bar."""
    start = time.perf_counter()
    planned = plan(spec)
    files = spec.files
    atomic_write_text(files.spec, yaml.safe_dump(spec.to_dict(), sort_keys=False))
    todo = [p for p in planned if not p.complete]
    echo(f"grid: {len(planned)} cells ({len(spec.configs)} config(s) x {len(spec.machines)} machine type(s) x "
         f"{len(spec.seeds)} seed(s)); {len(planned) - len(todo)} complete, {len(todo)} to run")
    rows = {p.cell: result_row(p.cell, p.experiment, p.config, read_record(p.experiment)) for p in planned if p.complete}
    if todo:
        rows.update(run_cells(todo, spec, echo, bar=progress))
    ordered = [rows[p.cell] for p in planned]
    write_results(files.results, ordered)
    summary = write_summary(spec, planned, ordered, files, echo=echo)
    outcome = GridOutcome(files, ordered, len(todo), len(planned) - len(todo), time.perf_counter() - start, summary)
    echo(f"grid finished in {outcome.seconds:.1f} s: {len(ordered) - len(outcome.failed)} of {len(ordered)} cells "
         f"done, {len(outcome.failed)} failed; results {files.results}; summary {files.summary}")
    for row in outcome.failed:
        echo(f"  failed: {row['approach']}/{row['machine']}/seed{row['seed']}: {row['error']} (log: {row['log']})")
    return outcome


# --- Ray ----------------------------------------------------------------------------------------------
def import_ray() -> Any:
    try:
        import ray  # lazy, optional: the grid extra; planning, skipping and summaries work without it
    except ImportError:
        raise ConfigError(f"hybrid-asd grid runs its cells on Ray, which is not installed: {GRID_EXTRA}") from None
    return ray


def connect(ray: Any, spec: GridSpec) -> None:
    """Start a local Ray instance, or join the cluster at ``spec.address``."""
    if spec.address is None:
        ray.init(num_cpus=spec.local_cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False,
                 log_to_driver=False)
    else:
        ray.init(address=spec.address, log_to_driver=False)
    resources = ray.cluster_resources()
    log.info("Ray: %d node(s), %g CPU(s), %g GPU(s)", len([n for n in ray.nodes() if n.get("Alive")]),
             resources.get("CPU", 0), resources.get("GPU", 0))


def check_resources(ray: Any, spec: GridSpec, echo: Echo) -> None:
    """A cell runs on one node: some node must have its CPUs and GPUs, or Ray would hold the cells
    forever. An error for the local instance; a warning for a cluster (an autoscaler may add nodes)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for name, need in (("CPU", spec.cpus_per_cell), ("GPU", spec.gpus_per_cell)):
        have = max((float(r.get(name, 0)) for r in nodes), default=0.0)
        if need > 0 and have < need:
            flag = f"--{name.lower()}s-per-cell"
            what = (f"a cell asks for {need:g} {name}(s) ({flag}) but no node of the Ray "
                    f"{'instance' if spec.address is None else 'cluster'} has that many (largest: {have:g})")
            if spec.address is None:
                raise ConfigError(what + (f"; lower {flag}" if name == "CPU" else "; use --gpus-per-cell 0 on "
                                          "a machine without a GPU"))
            echo(f"warning: {what}; the cells wait until such a node joins")


def thread_env(cpus: float) -> dict[str, str]:
    """The environment of a cell's worker: OpenMP/BLAS threads = the cell's CPUs, passive waiting
    (busy-waiting OpenMP threads collapse throughput on shared cores; see hybrid_asd.cli.main)."""
    threads = str(max(1, int(cpus)))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def run_cells(todo: Sequence[PlannedCell], spec: GridSpec, echo: Echo, *, bar: bool = False
              ) -> dict[Any, dict[str, Any]]:
    """One Ray task per cell; returns the rows by cell. Ray retries a task whose worker dies or
    that raises (up to ``max_retries``); a cell that still fails gets a failed row."""
    ray = import_ray()
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    own = not ray.is_initialized()  # a process that called ray.init() itself (a notebook, a test) keeps its Ray
    if own:
        connect(ray, spec)
    else:
        log.info("using this process's Ray connection (address and local CPUs of the grid are not used)")
    try:
        check_resources(ray, spec, echo)
        task = ray.remote(run_cell).options(
            num_cpus=spec.cpus_per_cell, num_gpus=spec.gpus_per_cell, max_retries=spec.max_retries,
            retry_exceptions=True, runtime_env={"env_vars": thread_env(spec.cpus_per_cell)},
        )
        pending = {}
        for p in todo:
            # The experiment root as an absolute path: a worker's current folder is not the driver's.
            job = CellJob(p.cell, str(Path(spec.exp_root).resolve()), p.config.to_dict(), spec.overwrite,
                          spec.cpus_per_cell, run_id, spec.gpus_per_cell)
            pending[task.remote(job)] = p
        progress = Progress(len(todo), echo, bar=bar)
        rows = {}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
                running = count_running(pending.values(), run_id)
                if not ready:
                    progress.waiting(running)
                    continue
                p = pending.pop(ready[0])
                try:
                    row = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    row = cell_failed(p, error_line(exc))
                rows[p.cell] = row
                progress.finished(row, count_running(pending.values(), run_id))
        finally:
            progress.close()
        return rows
    finally:
        if own:
            ray.shutdown()


def cell_failed(p: PlannedCell, error: str) -> dict[str, Any]:
    """The row (and record) of a cell that failed after its retries."""
    record = read_record(p.experiment) or {"attempt": 0}
    wall = record.get("wall_s", math.nan)
    record = finish_record(p.experiment, record, FAILED, float(wall) if wall != "" else math.nan, error=error)
    return failed_row(p.cell, p.experiment, error, record)


def error_line(exc: BaseException) -> str:
    """One line for a task's failure: the original exception of a RayTaskError, else Ray's first line."""
    cause = getattr(exc, "cause", None)
    if cause is not None and not isinstance(cause, type(exc)):
        text = f"{type(cause).__name__}: {cause}"
    else:
        text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return " ".join(text.split())[:500]


def count_running(cells: Any, run_id: str) -> int:
    """Cells of this run whose worker has started them and not finished (their records say so)."""
    count = 0
    for p in cells:
        record = read_record(p.experiment)
        if record and record.get("run_id") == run_id and record.get("status") == RUNNING:
            count += 1
    return count


class Progress:
    """One line per finished cell, each with the live count; a count line while none finishes; and,
    with ``bar``, a progress bar (tqdm) whose postfix is the live count."""

    def __init__(self, total: int, echo: Echo, *, bar: bool = False):
        self.total, self._echo = total, echo
        self.done = self.failed = 0
        self.last_line = time.monotonic()
        self.last_running = -1
        self.bar = tqdm(total=total, desc="grid", unit="cell", dynamic_ncols=True, disable=not bar)

    def echo(self, line: str) -> None:
        with tqdm.external_write_mode():  # the line above the bar, not through it
            self._echo(line)

    def close(self) -> None:
        self.bar.close()

    def counts(self, running: int) -> str:
        left = self.total - self.done - self.failed - running
        return f"done {self.done}, running {running}, failed {self.failed}, left {left}"

    def finished(self, row: dict[str, Any], running: int) -> None:
        key = f"{row['approach']}/{row['machine']}/seed{row['seed']}"
        if row["status"] == DONE:
            self.done += 1
            what = (f"done    {key}: official {format_value(row['official_score'])}, {float(row['wall_s']):.1f} s, "
                    f"{row['device']}, attempt {row['attempts']}")
        else:
            self.failed += 1
            what = f"FAILED  {key}: {row['error']} (log: {row['log']})"
        n = self.done + self.failed
        self.echo(f"[{n:>{len(str(self.total))}}/{self.total}] {what} | {self.counts(running)}")
        self.bar.update(1)
        self.bar.set_postfix_str(self.counts(running))
        self.last_line, self.last_running = time.monotonic(), running

    def waiting(self, running: int) -> None:
        if running == self.last_running and time.monotonic() - self.last_line < STATUS_EVERY_S:
            return
        if self.bar.disable:  # without a bar, a count line; with one, its postfix
            self.echo(f"  ... {self.counts(running)}")
        else:
            self.bar.set_postfix_str(self.counts(running))
        self.last_line, self.last_running = time.monotonic(), running


__all__ = ["GridOutcome", "Progress", "check_resources", "connect", "count_running", "import_ray", "run_cells", "run_grid", "thread_env"]
