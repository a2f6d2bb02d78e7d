"""Stage orchestration: each function runs one stage on an experiment folder.

The CLI is a thin layer over these functions; recipes call the CLI. Stages talk only through
files in the experiment folder (see hybrid_asd.experiment), so any stage can be rerun alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from hybrid_asd.config import load_config
from hybrid_asd.data.clips import Clip, read_clip_list, write_clip_list
from hybrid_asd.errors import DataError, StageError
from hybrid_asd.experiment import Experiment

log = logging.getLogger(__name__)

STAGES = ("prepare", "features", "train", "extract", "fit", "score", "fuse", "evaluate")


def make_config(
    config_path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    data_root: str | Path | None = None,
    machine: str | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Resolve an approach config with the common command-line options folded in."""
    extra = list(overrides)
    if data_root is not None:
        extra.append(f"data.root={Path(data_root).resolve()}")
    if machine is not None:
        extra.append(f"data.machine={machine}")
    if seed is not None:
        extra.append(f"seed={seed}")
    if device is not None:
        extra.append(f"device={device}")
    return load_config(config_path, extra)


# --- stage: prepare -------------------------------------------------------------------------
def prepare(exp: Experiment, config: dict[str, Any], *, overwrite: bool = False) -> tuple[list[Clip], list[Clip]]:
    """Save the resolved config and the machine type's train/test clip lists into ``exp``."""
    from hybrid_asd.data.manifest import scan

    data = config["data"]
    if not data.get("root"):
        raise StageError("data.root is not set (pass --data-root)")
    if not data.get("machine"):
        raise StageError("data.machine is not set (pass --machine)")
    exp.init(config, overwrite=overwrite)
    manifest = scan(data["root"], machines=[data["machine"]], ground_truth=data.get("ground_truth"))
    for path, reason in manifest.problems:
        log.warning("skipped %s: %s", path, reason)
    train = manifest.select(machine=data["machine"], split="train")
    test = manifest.select(machine=data["machine"], split="test")
    if not train:
        raise DataError(f"no training clips for machine type {data['machine']!r} under {data['root']}")
    write_clip_list(exp.manifest_dir / "train.csv", train)
    write_clip_list(exp.manifest_dir / "test.csv", test)
    log.info("prepared %s: %d train and %d test clips\n%s", exp.root, len(train), len(test), manifest.summary())
    exp.mark_done("prepare", config)
    return train, test


def load_manifest(exp: Experiment) -> tuple[list[Clip], list[Clip]]:
    train = read_clip_list(exp.require(exp.root / "manifest" / "train.csv", "prepare"))
    test_path = exp.root / "manifest" / "test.csv"
    test = read_clip_list(test_path) if test_path.is_file() else []
    return train, test


# --- stage: features ------------------------------------------------------------------------
def feature_cache(config: dict[str, Any]):
    from hybrid_asd.features.cache import FeatureCache

    return FeatureCache(config["features"], config["data"])


def run_features(exp: Experiment, config: dict[str, Any], *, progress: bool = True) -> int:
    """Fill the feature cache for every clip of the experiment; returns the number computed."""
    train, test = load_manifest(exp)
    computed = feature_cache(config).ensure([c.path for c in train + test], progress=progress)
    exp.mark_done("features", config)
    return computed


# --- stages delegated to their modules -------------------------------------------------------
def run_train(exp: Experiment, config: dict[str, Any], *, device: str, progress: bool = True) -> Path | None:
    if config.get("extractor") is None:
        log.info("config has no extractor: nothing to train")
        return None
    from hybrid_asd.extractor.stage import run_train as _run

    return _run(exp, config, device, progress=progress)


def run_extract(exp: Experiment, config: dict[str, Any], *, device: str, progress: bool = True) -> None:
    if config.get("extractor") is None:
        log.info("config has no extractor: nothing to extract")
        return None
    from hybrid_asd.extractor.stage import run_extract as _run

    _run(exp, config, device, progress=progress)
    write_table_submission(exp, config, "oe")


def run_fit(exp: Experiment, config: dict[str, Any], *, device: str, progress: bool = True) -> None:
    from hybrid_asd.detectors.stage import run_fit as _run

    _run(exp, config, device=device, progress=progress)


def run_score(exp: Experiment, config: dict[str, Any], *, device: str, progress: bool = True) -> None:
    from hybrid_asd.detectors.stage import run_score as _run

    _run(exp, config, device=device, progress=progress)


def run_experiment_fuse(exp: Experiment, config: dict[str, Any], *, progress: bool = True) -> dict[str, Any]:
    """Fuse the experiment's own score tables with its ``ensemble`` config section."""
    from hybrid_asd.ensemble.stage import run_fuse

    ens = config["ensemble"]
    members = ens.get("members")
    paths = sorted(exp.scores_dir.glob("*.csv"))
    if members:
        paths = [exp.scores_dir / f"{m}.csv" for m in members]
        for path in paths:
            exp.require(path, "score")
    if not paths:
        raise StageError(f"{exp.scores_dir} holds no score tables: run the 'score' stage first")
    result = run_fuse(
        paths,
        exp.fused_dir,
        rule=ens["rule"],
        weights=ens.get("weights") or None,
        normalise=ens["normalise"],
        per_domain=ens["per_domain"],
        min_clips=ens["min_clips"],
        tune=False,
        protocol=config["evaluation"]["protocol"],
        thresholds_quantile=config["evaluation"]["threshold_quantile"],
    )
    exp.mark_done("fuse", config)
    return result


def run_experiment_evaluate(exp: Experiment, config: dict[str, Any], *, progress: bool = True) -> dict[str, Any]:
    """Evaluate every score table of the experiment (and the fused one) on its labelled test clips."""
    from hybrid_asd.evaluation.metrics import evaluate_scores
    from hybrid_asd.scores import ScoreTable

    tables = {p.stem: ScoreTable.from_csv(p) for p in sorted(exp.scores_dir.glob("*.csv"))}
    fused = exp.root / "fused" / "fused.csv"
    if fused.is_file():
        tables["fused"] = ScoreTable.from_csv(fused, "fused")
    if not tables:
        raise StageError(f"{exp.root}: no score tables; run the 'score' stage first")
    results = {}
    for name, table in tables.items():
        labelled = [c.label in ("normal", "anomaly") for c in table.clips]
        if not any(labelled):
            log.warning("%s: no labelled test clips; skipping evaluation", name)
            continue
        res = evaluate_scores(table, protocol=config["evaluation"]["protocol"], max_fpr=config["evaluation"]["max_fpr"],
                              decisions=table_decisions(table, config))
        res.to_official_csv(exp.eval_dir / f"result_{name}.csv")
        results[name] = res
    exp.mark_done("evaluate", config)
    return results


def table_decisions(table, config: dict[str, Any]) -> dict | None:
    """The 0/1 decisions of the submission files (gamma thresholds from the table's train rows),
    so the result table has precision, recall and F1 as the official one; None without train rows."""
    from hybrid_asd.evaluation.thresholds import decisions_from_thresholds, section_thresholds

    if not len(table.select(split="train")):
        return None
    return decisions_from_thresholds(table, section_thresholds(table, config["evaluation"]["threshold_quantile"]))


def write_table_submission(exp: Experiment, config: dict[str, Any], detector_id: str) -> None:
    """Official score files (and decisions) for one score table of the experiment."""
    from hybrid_asd.evaluation.submission import write_submission
    from hybrid_asd.evaluation.thresholds import section_thresholds
    from hybrid_asd.scores import ScoreTable

    table = ScoreTable.from_csv(exp.require(exp.root / "scores" / f"{detector_id}.csv", "extract"), detector_id)
    thresholds = section_thresholds(table, config["evaluation"]["threshold_quantile"])
    write_submission(table, exp.submission_dir / detector_id, thresholds)


# --- all stages -----------------------------------------------------------------------------
def run_stages(
    exp: Experiment,
    config: dict[str, Any],
    *,
    stage: str = "prepare",
    stop_stage: str = "evaluate",
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Run stages ``stage``..``stop_stage`` in order. A stage that completed with the same
    config is skipped, except ``stage`` itself, which is rerun (as recipes' ``--stage N``)."""
    from hybrid_asd.utils import resolve_device, seed_everything

    for name in (stage, stop_stage):
        if name not in STAGES:
            raise StageError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    first, last = STAGES.index(stage), STAGES.index(stop_stage)
    device = resolve_device(config.get("device", "auto"))
    seed_everything(int(config.get("seed", 0)))
    if first > 0:
        exp.init(config, overwrite=overwrite)
    results = None
    for i, name in enumerate(STAGES[first : last + 1]):
        if i > 0 and exp.stage_done(name, config):
            log.info("stage %s already complete; skipping", name)
            continue
        log.info("=== stage %s (%s)", name, exp.root)
        if name == "prepare":
            prepare(exp, config, overwrite=overwrite)
        elif name == "features":
            run_features(exp, config, progress=progress)
        elif name == "train":
            run_train(exp, config, device=device, progress=progress)
        elif name == "extract":
            run_extract(exp, config, device=device, progress=progress)
        elif name == "fit":
            run_fit(exp, config, device=device, progress=progress)
        elif name == "score":
            run_score(exp, config, device=device, progress=progress)
        elif name == "fuse":
            run_experiment_fuse(exp, config)
        elif name == "evaluate":
            results = run_experiment_evaluate(exp, config)
    return results


# --- fuse helpers ---------------------------------------------------------------------------
def collect_score_tables(sources: list[Path], detectors: list[str] | None = None) -> list[Path]:
    """Score-table CSVs from experiment folders (their scores/*.csv) or explicit CSV files."""
    paths: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            found = sorted((src / "scores").glob("*.csv")) if (src / "scores").is_dir() else sorted(src.glob("*.csv"))
            if not found:
                raise StageError(f"{src}: no score tables (expected {src}/scores/*.csv)")
            paths.extend(found)
        elif src.is_file():
            paths.append(src)
        else:
            raise StageError(f"score source not found: {src}")
    if detectors:
        known = {p.stem for p in paths}
        missing = sorted(set(detectors) - known)
        if missing:
            raise StageError(f"detector(s) {missing} not found among score tables {sorted(known)}")
        paths = [p for p in paths if p.stem in detectors]
    return paths


def load_weights(path: Path | None, rule: str | None) -> tuple[str, dict[str, Any] | None]:
    """Rule and weights from a YAML written by ``fuse --tune`` (``ensemble: {rule, weights}``)."""
    import yaml

    weights = None
    file_rule = None
    if path is not None:
        if not Path(path).is_file():
            raise StageError(f"weights file not found: {path}")
        data = yaml.safe_load(Path(path).read_text()) or {}
        ens = data.get("ensemble", data)
        weights = ens.get("weights")
        file_rule = ens.get("rule")
    return rule or file_rule or "weighted_sum", weights
