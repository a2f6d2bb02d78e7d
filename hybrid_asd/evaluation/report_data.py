"""Reading an experiment folder for its report: what each stage left, evaluated, and notes on
what is missing (a stage that has not run is a note, not an error).

One :class:`~hybrid_asd.evaluation.metrics.Results` per detector (``evaluate_scores`` with the
experiment's protocol and ``max_fpr``) feeds both the HTML tables and the ROC legends, so their
numbers are equal by construction.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from hybrid_asd.config import Config
from hybrid_asd.data.clips import Clip, read_clip_list
from hybrid_asd.ensemble.fusion import FUSED_NAME
from hybrid_asd.errors import HybridASDError, ScoreError, StageError
from hybrid_asd.evaluation.metrics import Key, LabelledScores, Results, evaluate_scores, groups_from_table
from hybrid_asd.evaluation.settings import EvaluationSettings
from hybrid_asd.evaluation.thresholds import decisions_from_thresholds, read_thresholds, section_thresholds
from hybrid_asd.experiment import Experiment
from hybrid_asd.scores import ScoreTable

log = logging.getLogger(__name__)

TRAIN_LOG_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")


def format_metric(value: float | None) -> str:
    """How every AUC/pAUC is printed, in tables and legends alike."""
    return "-" if value is None else f"{value:.4f}"


@dataclass(frozen=True)
class Note:
    """A remark shown at the top of the report. ``kind``: missing (a stage has not run),
    problem (a file could not be used) or info."""

    kind: str
    text: str


@dataclass
class DetectorEval:
    """One score table with its evaluation; ``results`` is None when it cannot be evaluated."""

    detector: str
    table: ScoreTable
    results: Results | None = None
    groups: dict[Key, LabelledScores] = field(default_factory=dict)  # labelled test clips (ROC input)
    thresholds: dict[Key, float] | None = None


@dataclass
class ExperimentData:
    """Everything a report shows about one experiment folder."""

    root: Path
    label: str
    config: Config
    detector_filter: list[str] | None = None
    clips: list[Clip] | None = None
    detectors: dict[str, DetectorEval] = field(default_factory=dict)
    embeddings: tuple[list[Clip], np.ndarray] | None = None
    train_log: dict[str, np.ndarray] | None = None
    notes: list[Note] = field(default_factory=list)

    @property
    def evaluation(self) -> EvaluationSettings:
        return self.config.evaluation

    @property
    def experiment(self) -> Experiment:
        return Experiment(self.root)

    @property
    def protocol(self) -> str:
        return self.evaluation.protocol

    @property
    def max_fpr(self) -> float:
        return self.evaluation.max_fpr

    @property
    def evaluated(self) -> list[DetectorEval]:
        return [d for d in self.detectors.values() if d.results is not None]

    def note(self, kind: str, text: str) -> None:
        (log.info if kind == "info" else log.warning)("%s: %s", self.root, text)
        self.notes.append(Note(kind, text))


def load_experiment(root: str | Path, *, detectors: Sequence[str] | None = None,
                    label: str | None = None) -> ExperimentData:
    """Read and evaluate what the stages wrote into ``root``; missing parts become notes.

    ``detectors`` restricts the report to these detector ids (``fused`` for the fused table).
    Raises :class:`StageError` only when the folder or its ``config.yaml`` is missing (and
    :class:`~hybrid_asd.errors.ConfigError` when that config is invalid).
    """
    root = Path(root)
    if not root.is_dir():
        raise StageError(f"experiment folder not found: {root}")
    config = Experiment(root).load_config()
    data = ExperimentData(root, label or root.name or str(root), config, list(detectors) if detectors else None)
    _load_manifest(data)
    _check_stale_stages(data)
    _load_detectors(data)
    _load_embeddings(data)
    _load_train_log(data)
    return data


def _load_manifest(data: ExperimentData) -> None:
    exp = data.experiment
    if not exp.manifest_path("train").is_file():
        data.note("missing", "no clip lists (manifest/train.csv): run the 'prepare' stage")
        return
    try:
        data.clips = exp.train_clips() + exp.test_clips()
    except (KeyError, ValueError) as exc:
        data.note("problem", f"clip lists under manifest/ could not be read ({exc!r}): rerun the 'prepare' stage")


def _check_stale_stages(data: ExperimentData) -> None:
    """A note for every stage whose outputs exist but which is not complete for the saved config
    (its inputs changed, e.g. after 'adapt', or it was interrupted): what the report shows of it is stale."""
    exp = data.experiment
    if not any(exp.marker_path(s).is_file() for s in ("prepare", "fit", "score")):
        return  # a folder not written by the stages (no completion markers): nothing to compare
    outputs = {"fit": [exp.detector_train_scores_path(e.id) for e in data.config.detectors],
               "score": list(exp.score_table_paths().values()), "fuse": [exp.fusion.fused],
               "evaluate": list(exp.result_paths().values())}
    for stage, paths in outputs.items():
        if any(p.is_file() for p in paths) and not exp.stage_done(stage, data.config):
            data.note("problem", f"the '{stage}' stage is not complete for this config, so its outputs may be stale: "
                                 f"rerun it (hybrid-asd run --exp {exp.root} --stage {stage})")


def _score_table_paths(data: ExperimentData) -> dict[str, Path]:
    exp = data.experiment
    paths = exp.score_table_paths()
    if exp.fusion.fused.is_file():
        paths[FUSED_NAME] = exp.fusion.fused
    return paths


def _load_detectors(data: ExperimentData) -> None:
    paths = _score_table_paths(data)
    if not paths:
        data.note("missing", "no score tables (scores/*.csv): run the 'score' stage (inlier detectors) "
                             "or 'extract' (OE scores, scores/oe.csv)")
        return
    if data.detector_filter:
        absent = [d for d in data.detector_filter if d not in paths]
        if absent:
            data.note("problem", f"requested detector(s) {', '.join(absent)} have no score table "
                                 f"(found: {', '.join(paths)})")
        paths = {d: paths[d] for d in data.detector_filter if d in paths}
    elif FUSED_NAME not in paths and len(paths) > 1:
        data.note("missing", "no fused scores (fused/fused.csv): run the 'fuse' stage to combine the detectors")
    for detector, path in paths.items():
        try:
            table = ScoreTable.from_csv(path, detector)
        except HybridASDError as exc:
            data.note("problem", f"score table of {detector!r} could not be read: {exc}")
            continue
        data.detectors[detector] = _evaluate_detector(data, table)
    _check_eval_tables(data)


def _evaluate_detector(data: ExperimentData, table: ScoreTable) -> DetectorEval:
    det = DetectorEval(table.detector, table)
    written = data.experiment.thresholds_path(table.detector)
    try:
        if written.is_file():  # the thresholds of the official decision files
            det.thresholds = read_thresholds(written)
        else:
            det.thresholds = section_thresholds(table, data.evaluation.threshold_quantile)
            data.note("info", f"detector {table.detector!r}: no {written.relative_to(data.root)} (written by the "
                              "'score' and 'fuse' stages); thresholds fitted to all its train rows here")
    except ScoreError as exc:
        data.note("info", f"detector {table.detector!r}: no decision thresholds ({exc})")
    decisions = None
    if det.thresholds is not None:
        try:
            decisions = decisions_from_thresholds(table, det.thresholds)
        except ScoreError as exc:
            data.note("info", f"detector {table.detector!r}: no decisions, so no precision/recall/F1 ({exc})")
    if not any(c.split == "test" and c.label in ("normal", "anomaly") for c in table.clips):
        data.note("info", f"detector {table.detector!r}: no labelled test clips (no ground truth): "
                          "no AUC table or ROC curves")
        return det
    try:
        det.groups = groups_from_table(table)
        det.results = evaluate_scores(table, data.protocol, data.max_fpr, decisions)
        for (machine, section, domain), reason in det.results.skipped:
            data.note("info", f"detector {table.detector!r}: {machine} section {section:02d} {domain} not evaluated: "
                              f"{reason}")
    except ScoreError as exc:
        data.note("problem", f"detector {table.detector!r} cannot be evaluated: {exc}")
    return det


def _official_score_in_csv(path: Path) -> float | None:
    with open(path, newline="") as fh:
        for row in csv.reader(fh):
            if len(row) >= 3 and row[0] == "official score":
                return float(row[2])
    return None


def _check_eval_tables(data: ExperimentData) -> None:
    """Compare the 'evaluate' stage's tables (eval/result_<id>.csv) with the score tables."""
    found = False
    for det in data.evaluated:
        path = data.experiment.result_path(det.detector)
        if not path.is_file():
            continue
        found = True
        try:
            written = _official_score_in_csv(path)
        except (OSError, ValueError) as exc:
            data.note("problem", f"{path.relative_to(data.root)} could not be read: {exc}")
            continue
        computed = det.results.official_score  # type: ignore[union-attr]
        if written is None or not math.isclose(written, computed, rel_tol=1e-9, abs_tol=1e-12):
            shown = "no official score" if written is None else f"official score {format_metric(written)}"
            data.note("problem", f"{path.relative_to(data.root)} holds {shown} but scores give "
                                 f"{format_metric(computed)}: it is stale, rerun the 'evaluate' stage")
    if data.evaluated and not found:
        data.note("missing", "no eval/result_<id>.csv tables: the 'evaluate' stage has not run "
                             "(the tables below are computed from the score tables)")


def _load_embeddings(data: ExperimentData) -> None:
    clips_csv, npy = data.experiment.embedding_clips_path, data.experiment.embeddings_path
    if not (clips_csv.is_file() and npy.is_file()):
        if data.config.extractor is None:
            data.note("info", "no embeddings: the config has no extractor, so there is no embedding map")
        else:
            data.note("missing", "no embeddings (embeddings/clips.csv, embeddings.npy): run the 'extract' stage")
        return
    try:
        clips = read_clip_list(clips_csv)
        emb = np.load(npy, allow_pickle=False)
    except (OSError, KeyError, ValueError) as exc:
        data.note("problem", f"embeddings could not be read ({exc!r}): rerun the 'extract' stage")
        return
    if emb.ndim != 2 or len(emb) != len(clips) or not len(clips):
        data.note("problem", f"embeddings/embeddings.npy has shape {emb.shape} for {len(clips)} clips in "
                             "embeddings/clips.csv: rerun the 'extract' stage")
        return
    data.embeddings = (clips, emb)


def _load_train_log(data: ExperimentData) -> None:
    path = data.experiment.extractor.train_log
    if not path.is_file():
        if data.config.extractor is None:
            data.note("info", "no training curve: the config has no extractor")
        else:
            data.note("missing", "no extractor training log (extractor/train_log.csv): run the 'train' stage")
        return
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "epoch" not in rows[0]:
        data.note("problem", "extractor/train_log.csv holds no epochs: rerun the 'train' stage")
        return
    try:
        data.train_log = {col: np.array([_as_float(r.get(col)) for r in rows]) for col in TRAIN_LOG_COLUMNS}
    except ValueError as exc:
        data.note("problem", f"extractor/train_log.csv: {exc}")


def _as_float(text: str | None) -> float:
    return float("nan") if text in (None, "") else float(text)


