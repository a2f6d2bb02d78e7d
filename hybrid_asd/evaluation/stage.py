"""The ``evaluate`` stage: the official result table of every score table of the experiment."""

from __future__ import annotations

import logging

from hybrid_asd.config import Config
from hybrid_asd.errors import StageError
from hybrid_asd.evaluation.metrics import Results, evaluate_scores
from hybrid_asd.evaluation.thresholds import decisions_from_thresholds, read_thresholds
from hybrid_asd.experiment import Experiment
from hybrid_asd.ensemble.fusion import FUSED_NAME
from hybrid_asd.scores import ScoreTable

log = logging.getLogger(__name__)


def run_evaluate(exp: Experiment, config: Config, *, progress: bool = True) -> dict[str, Results]:
    """Evaluate every score table (and the fused one) on its labelled test clips into ``eval/``."""
    tables = {table_id: ScoreTable.from_csv(path) for table_id, path in exp.score_table_paths().items()}
    if exp.fusion.fused.is_file() and not exp.stage_done("fuse", config):
        raise StageError(f"{exp.fusion.fused} is stale: its inputs changed since the 'fuse' stage ran "
                         f"(or it did not finish); run 'hybrid-asd fuse --exp {exp.root}' first")
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
                              decisions=table_decisions(exp, name, table))
        res.to_official_csv(exp.result_path(name))
        results[name] = res
    return results


def table_decisions(exp: Experiment, table_id: str, table: ScoreTable) -> dict | None:
    """The 0/1 decisions of the table's official decision files (the thresholds the score or fuse stage
    wrote), so the result table's precision, recall and F1 are those of the submission; None when the
    thresholds were not written."""
    path = exp.thresholds_path(table_id)
    if not path.is_file():
        log.warning("%s: no decision thresholds (%s): the result table has no precision, recall or F1; "
                    "rerun the 'score' and 'fuse' stages", table_id, path)
        return None
    return decisions_from_thresholds(table, read_thresholds(path))
