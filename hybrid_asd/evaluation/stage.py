"""The ``evaluate`` stage: the official result table of every score table of the experiment."""

from __future__ import annotations

import logging

from hybrid_asd.config import Config
from hybrid_asd.errors import StageError
from hybrid_asd.evaluation.metrics import Results, evaluate_scores
from hybrid_asd.evaluation.thresholds import decisions_from_thresholds, section_thresholds
from hybrid_asd.experiment import Experiment
from hybrid_asd.ensemble.fusion import FUSED_NAME
from hybrid_asd.scores import ScoreTable

log = logging.getLogger(__name__)


def run_evaluate(exp: Experiment, config: Config, *, progress: bool = True) -> dict[str, Results]:
    """Evaluate every score table (and the fused one) on its labelled test clips into ``eval/``."""
    tables = {table_id: ScoreTable.from_csv(path) for table_id, path in exp.score_table_paths().items()}
    if exp.fusion.fused.is_file():
        tables[FUSED_NAME] = ScoreTable.from_csv(exp.fusion.fused, FUSED_NAME)
    if not tables:
        raise StageError(f"{exp.root}: no score tables; run the 'score' stage first")
    evaluation = config.evaluation
    results = {}
    for name, table in tables.items():
        if not any(c.label in ("normal", "anomaly") for c in table.clips):
            log.warning("%s: no labelled test clips; skipping evaluation", name)
            continue
        res = evaluate_scores(table, protocol=evaluation.protocol, max_fpr=evaluation.max_fpr,
                              decisions=table_decisions(table, evaluation.threshold_quantile))
        res.to_official_csv(exp.result_path(name))
        results[name] = res
    return results


def table_decisions(table: ScoreTable, threshold_quantile: float) -> dict | None:
    """The 0/1 decisions of the submission files (gamma thresholds from the table's train rows),
    so the result table has precision, recall and F1 as the official one; None without train rows."""
    if not len(table.select(split="train")):
        return None
    return decisions_from_thresholds(table, section_thresholds(table, threshold_quantile))
