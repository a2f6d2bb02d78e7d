"""Fusing score tables: the ``fuse`` stage of an experiment and ``hybrid-asd fuse`` across experiments.

``run_fuse`` reads ``scores/<detector_id>.csv`` files (several experiment folders allowed: tables
of different machine types with the same detector id are concatenated per id), optionally tunes
the weights on the labelled development sections, fuses, and writes into ``out_dir`` (see
:class:`~hybrid_asd.experiment.FusionFiles`)::

    fused.csv        the fused score table (train rows: fused out-of-fold normal scores)
    weights.yaml     ``ensemble: {rule, weights, ...}``, a config fragment a recipe passes back
    tuning.txt       the tuning report (only with ``tune=True``)
    submission/      anomaly_score_*.csv and decision_result_*.csv (official names)

:func:`run_fuse_stage` is the pipeline stage: the experiment's own score tables, fused with its
``ensemble`` section into its ``fused/`` folder.

Members, their names (``<approach>/<id>`` where one id comes from several approaches) and their
held-out train rows (for tables computed by the extractor: its validation clips, used for
z-normalisation and decision thresholds) are found by :mod:`hybrid_asd.ensemble.members`; see
docs/ensemble.md.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hybrid_asd.config import Config, read_yaml_mapping
from hybrid_asd.ensemble.fusion import References, Weights, fuse
from hybrid_asd.ensemble.members import (
    collect_score_tables, discover_references, intersect_references, member_names, read_score_tables,
)
from hybrid_asd.ensemble.settings import EnsembleSettings
from hybrid_asd.ensemble.tune import ensemble_section, tune_weights, write_weights_yaml
from hybrid_asd.errors import StageError
from hybrid_asd.evaluation.metrics import evaluate_scores
from hybrid_asd.evaluation.submission import write_submission_of
from hybrid_asd.experiment import Experiment, FusionFiles
from hybrid_asd.utils import atomic_write_text

log = logging.getLogger(__name__)


def run_fuse(
    score_paths: Sequence[str | Path],
    out_dir: str | Path,
    rule: str = "weighted_sum",
    weights: Weights | None = None,
    normalise: str = "znorm",
    per_domain: bool = False,
    tune: bool = False,
    protocol: str = "dcase2021",
    thresholds_quantile: float = 0.9,
    *,
    max_fpr: float = 0.1,
    min_clips: int = 10,
    method: str = "auto",
    grid_step: float = 0.1,
    per_machine: bool = False,
    loso: bool = True,
    seed: int = 0,
    references: References | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Fuse score tables into ``out_dir`` (see module docstring); with ``tune``, search the weights first.

    Returns a dict with the written paths (``fused``, ``weights``, ``submission``, ``tuning``),
    the ``rule`` and ``weights`` used, the ``official_score`` of the fused labelled test rows (or
    None without labels), ``tune_result`` (a TuneResult or None) and a printable ``report``.
    ``names`` (one per path) default to :func:`~hybrid_asd.ensemble.members.member_names`;
    ``references`` (member name -> held-out train clip paths) to
    :func:`~hybrid_asd.ensemble.members.discover_references` of ``score_paths``. Decision thresholds
    come from the fused train rows of clips held out for every member. ``protocol`` and ``max_fpr`` define the official
    score that tuning maximises and that is reported.
    """
    out = FusionFiles.in_folder(out_dir)
    names = list(names) if names is not None else member_names(score_paths)
    tables = read_score_tables(score_paths, names)
    detectors = [t.detector for t in tables]
    if references is None:
        references = discover_references(score_paths, names)
    tune_result = None
    if tune:
        if weights:
            log.warning("--tune: the given weights are ignored; tuning searches new ones")
        tune_result = tune_weights(
            tables, protocol=protocol, method=method, grid_step=grid_step, per_machine=per_machine, seed=seed,
            rule=rule, normalise=normalise, per_domain=per_domain, min_clips=min_clips, loso=loso,
            references=references if normalise == "znorm" else None, max_fpr=max_fpr,
        )
        weights = tune_result.weights
    fused = fuse(tables, rule=rule, weights=weights, normalise=normalise, per_domain=per_domain,
                 min_clips=min_clips, references=references if normalise == "znorm" else None)
    # Written only once fusing worked: a failed fuse leaves the previous weights and scores together.
    tuning_path = None
    if tune_result is not None:
        tuning_path = out.tuning
        atomic_write_text(tuning_path, tune_result.format() + "\n")
        tune_result.to_yaml(out.weights)
    else:
        write_weights_yaml(
            out.weights,
            ensemble_section(rule, dict(weights or {}), normalise, per_domain, detectors, min_clips),
            ["Fusion settings used by 'hybrid-asd fuse' (missing weights are 1.0)"],
        )
    fused.to_csv(out.fused)
    files = write_submission_of(fused, out.submission, thresholds_quantile,
                                reference=intersect_references(references, detectors), thresholds_path=out.thresholds)

    official = None
    if any(c.split == "test" and c.label in ("normal", "anomaly") for c in fused.clips):
        official = evaluate_scores(fused, protocol=protocol, max_fpr=max_fpr).official_score
    report_lines = [tune_result.format()] if tune_result is not None else []
    report_lines.append(f"fused {len(tables)} detector(s) ({', '.join(detectors)}) with rule {rule}")
    if official is not None:
        report_lines.append(f"official score ({protocol}) of the fused labelled test clips: {official:.4f}")
    log.info("fused scores: %s; %d submission file(s)", out.fused, len(files))
    return {
        "fused": out.fused,
        "weights": out.weights,
        "submission": out.submission,
        "submission_files": files,
        "tuning": tuning_path,
        "rule": rule,
        "weights_used": weights,
        "detectors": detectors,
        "official_score": official,
        "tune_result": tune_result,
        "report": "\n".join(report_lines),
    }


def run_fuse_stage(exp: Experiment, config: Config, *, progress: bool = True) -> dict[str, Any]:
    """The ``fuse`` stage: the experiment's score tables (``ensemble.members``, or all), fused with its
    ``ensemble`` section into ``fused/``; decisions and the reported score follow ``evaluation``."""
    ens, evaluation = config.ensemble, config.evaluation
    if ens.members:
        paths = [exp.require(exp.score_table_path(m), "score") for m in ens.members]
    else:
        paths = list(exp.score_table_paths().values())
    if not paths:
        raise StageError(f"{exp.root} holds no score tables: run the 'score' stage first")
    return run_fuse(
        paths, exp.fusion.folder, rule=ens.rule, weights=ens.weights or None, normalise=ens.normalise,
        per_domain=ens.per_domain, min_clips=ens.min_clips, tune=False, protocol=evaluation.protocol,
        thresholds_quantile=evaluation.threshold_quantile, max_fpr=evaluation.max_fpr,
    )


def load_weights(path: str | Path | None, rule: str | None) -> tuple[str, dict[str, Any] | None]:
    """Rule and weights from a YAML written by ``fuse --tune`` (``ensemble: {rule, weights}``), validated
    as an ``ensemble`` section; ``rule`` (when given) wins over the file's."""
    if path is None:
        return rule or EnsembleSettings().rule, None
    if not Path(path).is_file():
        raise StageError(f"weights file not found: {path}")
    data = read_yaml_mapping(path)
    section = data.get("ensemble", data) if isinstance(data, dict) else data
    ensemble = EnsembleSettings.parse(section, where="ensemble", source=str(path))
    return rule or ensemble.rule, ensemble.weights or None


__all__ = ["collect_score_tables", "discover_references", "load_weights", "read_score_tables", "run_fuse",
           "run_fuse_stage"]
