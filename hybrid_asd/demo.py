"""The main job: the whole system on the built-in synthetic data, end to end.

``hybrid-asd demo`` generates the ``demo`` preset (three machine types, three sections), then per
machine type runs two approach configs through every stage:

* ``demo_baselines``: the two official baselines' recipes, the AE (``ae``) and the section-classifier
  OE score (``oe``);
* ``demo_hybrid``: a sub-cluster AdaCos extractor whose embeddings feed a kNN with target adaptation
  (``knn``, the serial hybrid), a Mahalanobis inlier model on log-mel statistics fitted on source and
  target clips (``mahalanobis``) and the OE score of the same network; fused with equal weights (parallel hybrid).

It then fuses across the two experiments (AE + kNN + Mahalanobis, and all four detectors, by rank mean; and a
z-normalised weighted sum with tuned weights, leave-one-section-out estimate reported),
prints the official table per system, writes ``results.md`` / ``results.json`` and one report per
experiment. On 2 CPU cores the CNNs are small (see docs/results.md): the demo shows the system
working and the relative merit of the approaches, not DCASE numbers.

The experiments (one per approach config and machine type: the *units*) are independent; ``jobs`` of them
run at once in worker processes started with ``spawn`` (never ``fork``: a forked child of a process that
has used multithreaded torch or FAISS can hang). Every unit runs with ONE thread for torch, OpenMP and BLAS,
in a worker and in the sequential path (``jobs=1``, in this process) alike: training on 1 and on 2 threads
gives different floats (convolution gradients are summed in another order), so one thread per unit is
what makes a run's numbers independent of ``jobs``. The cross-experiment fusions run afterwards, in this
process, on the units' files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Iterator

from tqdm.auto import tqdm

from hybrid_asd.config import Config, load_config
from hybrid_asd.data.synthetic import generate
from hybrid_asd.ensemble.fusion import FUSED_NAME
from hybrid_asd.ensemble.stage import run_fuse
from hybrid_asd.errors import ConfigError, DataError
from hybrid_asd.evaluation.metrics import evaluate_scores
from hybrid_asd.evaluation.report import write_reports
from hybrid_asd.experiment import Experiment
from hybrid_asd.pipeline import run_stages
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_write_json, atomic_write_text, resolve_device, setup_logging, thread_limit

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
DEMO_CONFIGS = ("demo_baselines", "demo_hybrid")

# --quick: a smoke test of every stage in well under a minute per machine type.
QUICK_OVERRIDES = {
    "demo_baselines": ["extractor.epochs=1", "detectors.0.conf.epochs=1"],
    "demo_hybrid": ["extractor.epochs=1"],
}

# Rows of the printed table: (label, config, score table id). Rows from cross-experiment fusions
# (below) are added by name.
SYSTEMS = (
    ("AE baseline", "demo_baselines", "ae"),
    ("MobileNetV2-recipe OE baseline (small CNN)", "demo_baselines", "oe"),
    ("serial hybrid: kNN on sub-cluster AdaCos embeddings", "demo_hybrid", "knn"),
    ("IM: Mahalanobis on log-mel statistics", "demo_hybrid", "mahalanobis"),
    ("OE of the sub-cluster AdaCos network", "demo_hybrid", "oe"),
    ("parallel hybrid: OE + kNN + Mahalanobis (z-norm, equal weights)", "demo_hybrid", "fused"),
)
# Parallel hybrids across the two experiments: (label, rule, [(config, detector id), ...]).
CROSS_FUSIONS = (
    ("parallel hybrid: AE + kNN + Mahalanobis (rank mean)", "rank_mean",
     [("demo_baselines", "ae"), ("demo_hybrid", "knn"), ("demo_hybrid", "mahalanobis")]),
    ("parallel hybrid: AE + kNN + Mahalanobis + OE (rank mean)", "rank_mean",
     [("demo_baselines", "ae"), ("demo_hybrid", "knn"), ("demo_hybrid", "mahalanobis"), ("demo_hybrid", "oe")]),
)
TUNED_MEMBERS = [("demo_baselines", "ae"), ("demo_hybrid", "oe"), ("demo_hybrid", "knn"), ("demo_hybrid", "mahalanobis")]


def ensure_data(data_root: Path, preset: str, seed: int, progress: bool) -> list[str]:
    """Generate the synthetic data unless the same preset and seed are already there."""
    record = data_root / "synthetic.json"
    if record.is_file():
        meta = json.loads(record.read_text())
        if meta.get("preset") == preset and meta.get("seed") == seed:
            log.info("reusing synthetic data in %s", data_root)
            return sorted(p.name for p in data_root.iterdir() if p.is_dir())
        raise DataError(
            f"{data_root} holds synthetic data of another preset/seed; choose another --out or remove it"
        )
    generate(data_root, preset=preset, seed=seed, progress=progress, workers=max(1, min(4, os.cpu_count() or 1)))
    return sorted(p.name for p in data_root.iterdir() if p.is_dir())


def demo_config(name: str, data_root: Path, machine: str, seed: int, device: str, quick: bool) -> Config:
    overrides = [f"data.root={data_root.resolve()}", f"data.machine={machine}", f"seed={seed}", f"device={device}"]
    if quick:
        overrides += QUICK_OVERRIDES[name]
    return load_config(CONFIG_DIR / f"{name}.yaml", overrides)


def shares_network(name: str, data_root: Path, machine: str, seed: int, device: str, quick: bool) -> bool:
    """Whether config ``name``'s experiments train one network together (``extractor.train_machines``)."""
    extractor = demo_config(name, data_root, machine, seed, device, quick).extractor
    return extractor is not None and bool(extractor.train_machines)


# Environment of the worker processes, set while they start (spawned children read it when their libraries
# load, before any code of ours runs): one thread for OpenMP, BLAS and FAISS.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_jobs(n_units: int) -> int:
    """``min(cores, units)``: every core busy, no idle worker."""
    return max(1, min(available_cpus(), n_units))


def run_unit(out: Path, name: str, machine: str, data_root: Path, seed: int, device: str, quick: bool,
             progress: bool) -> tuple[Path, list[Path]]:
    """One experiment (approach config ``name`` on ``machine``) through every stage, and its report, on one
    thread; returns the experiment folder and the report paths."""
    exp = Experiment.for_run(out / "exp", name, machine, seed)
    config = demo_config(name, data_root, machine, seed, device, quick)
    log.info("=== %s / %s", name, machine)
    with thread_limit(1):
        run_stages(exp, config, overwrite=True, progress=progress)
        reports = write_reports([exp.root])
    return exp.root, reports


def _init_worker(log_level: int) -> None:
    setup_logging(log_level)


def _run_unit_indexed(args: tuple[int, tuple[Any, ...]]) -> tuple[int, tuple[Path, list[Path]]]:
    index, unit_args = args
    return index, run_unit(*unit_args)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_experiments(out: Path, machines: list[str], data_root: Path, *, seed: int, device: str, quick: bool,
                    progress: bool, jobs: int | None = None) -> tuple[dict[str, list[Experiment]], list[Path]]:
    """Every (config, machine type) unit through every stage and its report, ``jobs`` at a time (default
    :func:`default_jobs`; 1: one after the other in this process), the same numbers either way. Returns the
    experiments by config and the report paths (config by config)."""
    # longest first (every demo_baselines experiment, AE + OE network, takes about 1.8x a demo_hybrid one):
    # list scheduling then leaves no worker idle at the end while another runs a long experiment
    units = [(name, machine) for name in DEMO_CONFIGS for machine in machines]
    # a config whose experiments share one network (extractor.train_machines) trains it in its first unit while
    # its other units wait for it (extractor/shared.py): that unit goes first, to train while the baselines run
    first = {(name, machines[0]) for name in DEMO_CONFIGS
             if shares_network(name, data_root, machines[0], seed, device, quick)}
    units.sort(key=lambda unit: unit not in first)  # stable: the other units keep their order
    jobs = default_jobs(len(units)) if jobs is None else int(jobs)
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    jobs = min(jobs, len(units))
    unit_args = [(out, name, machine, data_root, seed, device, quick) for name, machine in units]
    results: list[tuple[Path, list[Path]] | None] = [None] * len(units)
    if jobs == 1:
        for i, args in enumerate(unit_args):
            results[i] = run_unit(*args, progress=progress)
    else:
        log.info("running %d experiments in %d worker processes (one thread each)", len(units), jobs)
        level = logging.getLogger("hybrid_asd").getEffectiveLevel()
        tasks = [(i, (*args, False)) for i, args in enumerate(unit_args)]  # no progress bars from workers
        with _environment(WORKER_ENV):  # spawned workers start inside Pool() and read it as they start
            pool = multiprocessing.get_context("spawn").Pool(jobs, initializer=_init_worker, initargs=(level,))
        with pool, tqdm(total=len(units), desc="demo experiments", unit="exp", disable=not progress) as bar:
            for i, result in pool.imap_unordered(_run_unit_indexed, tasks):
                results[i] = result
                bar.update(1)
    exps: dict[str, list[Experiment]] = {name: [] for name in DEMO_CONFIGS}
    reports: dict[str, list[Path]] = {name: [] for name in DEMO_CONFIGS}
    for (name, _), result in zip(units, results):
        assert result is not None
        exps[name].append(Experiment(result[0]))
        reports[name] += result[1]
    return exps, [path for name in DEMO_CONFIGS for path in reports[name]]


def member_paths(exps: dict[str, list[Experiment]], members: list[tuple[str, str]]) -> list[Path]:
    return [exp.score_table_path(det) for config_name, det in members for exp in exps[config_name]]


def system_results(out: Path, exps: dict[str, list[Experiment]]) -> dict[str, Any]:
    """Evaluate each system over all machine types (score tables concatenated)."""
    results = {}
    for label, config_name, table_id in SYSTEMS:
        tables = []
        for exp in exps[config_name]:
            path = exp.fusion.fused if table_id == FUSED_NAME else exp.score_table_path(table_id)
            tables.append(ScoreTable.from_csv(path, table_id))
        results[label] = evaluate_scores(ScoreTable.concat(tables, table_id))
    for i, (label, rule, members) in enumerate(CROSS_FUSIONS):
        fused = run_fuse(member_paths(exps, members), out / f"fused_cross{i}", rule=rule)["fused"]
        results[label] = evaluate_scores(ScoreTable.from_csv(fused, FUSED_NAME))
    return results


def tuned_fusion(out: Path, exps: dict[str, list[Experiment]]) -> dict[str, Any]:
    """Fuse AE, OE, kNN and Mahalanobis with tuned weights (leave-one-section-out reported)."""
    return run_fuse(member_paths(exps, TUNED_MEMBERS), out / "fused_tuned", tune=True)


def format_table(results: dict[str, Any], tuned: dict[str, Any] | None) -> str:
    lines = [
        "| system | source AUC | source pAUC | target AUC | target pAUC | official score |",
        "|---|---|---|---|---|---|",
    ]
    for label, res in results.items():
        d = res.by_domain()
        lines.append(
            f"| {label} | {d['source']['auc']:.4f} | {d['source']['pauc']:.4f} | "
            f"{d['target']['auc']:.4f} | {d['target']['pauc']:.4f} | {res.official_score:.4f} |"
        )
    if tuned is not None and tuned.get("tune_result") is not None:
        tr = tuned["tune_result"]
        lines.append("")
        lines.append(
            f"Tuned fusion (z-norm weighted sum of ae, oe, knn, mahalanobis): weights {tr.weights}, in-sample official score "
            f"{tr.score:.4f}, leave-one-section-out estimate {tr.loso_score:.4f} "
            f"(equal weights {tr.equal_weight_score:.4f})."
        )
    return "\n".join(lines)


def run_demo(out: str | Path = "exp/demo", *, seed: int = 0, preset: str = "demo", device: str = "auto",
             progress: bool = True, quick: bool = False, jobs: int | None = None) -> dict[str, Any]:
    """Run the demo into ``out``; print and return the results table.

    ``jobs``: experiments run at once in spawned worker processes (default: ``min(CPU cores, experiments)``;
    1: one after the other in this process); each runs on one thread, so the numbers do not depend on it.
    """
    out = Path(out)
    start = time.perf_counter()
    data_root = out / "data"
    machines = ensure_data(data_root, preset, seed, progress)
    exps, report_paths = run_experiments(out, machines, data_root, seed=seed, device=resolve_device(device),
                                         quick=quick, progress=progress, jobs=jobs)
    results = system_results(out, exps)
    tuned = tuned_fusion(out, exps)
    table = format_table(results, tuned)
    minutes = (time.perf_counter() - start) / 60
    text = (f"# hybrid_asd demo ({preset} preset, seed {seed}{', quick' if quick else ''})\n\n"
            f"Machine types: {', '.join(machines)}; harmonic means over machine types and sections.\n\n"
            f"{table}\n\nRun time: {minutes:.1f} min.\n")
    atomic_write_text(out / "results.md", text)
    atomic_write_json(out / "results.json", {
        label: {"official_score": res.official_score, **res.by_domain()} for label, res in results.items()
    })
    print(text)
    for path in report_paths:
        print(f"report: {path}")
    print(f"results: {out / 'results.md'}")
    return {"results": results, "tuned": tuned, "reports": report_paths, "minutes": minutes}

