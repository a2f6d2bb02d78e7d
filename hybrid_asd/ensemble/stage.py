"""The ``fuse`` stage: score tables of one or more experiments -> fused table + official files.

``run_fuse`` reads ``scores/<detector_id>.csv`` files (several experiment folders allowed: tables
of different machine types with the same detector id are concatenated per id), optionally tunes
the weights on the labelled development sections, fuses, and writes into ``out_dir``::

    fused.csv        the fused score table (train rows: fused out-of-fold normal scores)
    weights.yaml     ``ensemble: {rule, weights, ...}``, a config fragment a recipe passes back
    tuning.txt       the tuning report (only with ``tune=True``)
    submission/      anomaly_score_*.csv and decision_result_*.csv (official names)

OE train rows are mostly in-sample (the section classifier was trained on those clips); its
held-out validation clips are listed in the extractor checkpoint's ``meta["val_paths"]``.
:func:`discover_references` finds them next to each ``scores/oe.csv`` so that z-normalisation of
the OE scores uses only those (see docs/ensemble.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hybrid_asd.ensemble.fusion import References, Weights, fuse
from hybrid_asd.ensemble.tune import ensemble_section, tune_weights, write_weights_yaml
from hybrid_asd.errors import ScoreError
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_write_text

log = logging.getLogger(__name__)


def read_score_tables(score_paths: Sequence[str | Path]) -> list[ScoreTable]:
    """One table per detector id (file stem), concatenating the files of one id in the given order."""
    if not score_paths:
        raise ScoreError("no score tables given to fuse")
    by_id: dict[str, list[ScoreTable]] = {}
    for path in score_paths:
        table = ScoreTable.from_csv(path)
        by_id.setdefault(table.detector, []).append(table)
    tables = [ScoreTable.concat(parts, detector) for detector, parts in by_id.items()]
    for detector, parts in by_id.items():
        if len(parts) > 1:
            log.info("detector %r: concatenated %d score tables (%s)", detector, len(parts),
                     ", ".join(p.source for p in parts))
    return tables


def discover_references(score_paths: Sequence[str | Path]) -> dict[str, set[str]]:
    """Held-out train clips per detector id: for ``<exp>/scores/oe.csv``, the validation clips of
    ``<exp>/extractor/checkpoint.pt`` (``meta["val_paths"]``). Other detectors' train rows are
    out-of-fold already and need none."""
    from hybrid_asd.extractor.stage import OE_DETECTOR
    from hybrid_asd.extractor.train import CHECKPOINT_NAME

    refs: dict[str, set[str]] = {}
    for path in map(Path, score_paths):
        if path.stem != OE_DETECTOR:
            continue
        ckpt = path.parent.parent / "extractor" / CHECKPOINT_NAME
        if not ckpt.is_file():
            log.warning("%s: no extractor checkpoint at %s; OE train rows (in-sample) are used as they are",
                        path, ckpt)
            continue
        from hybrid_asd.extractor.checkpoint import read_checkpoint

        val_paths = (read_checkpoint(ckpt).get("meta") or {}).get("val_paths") or []
        if not val_paths:
            log.warning("%s: the extractor kept no validation clips (val_fraction 0); OE z-normalisation "
                        "statistics come from in-sample scores", ckpt)
            continue
        refs.setdefault(path.stem, set()).update(map(str, val_paths))
        log.info("%s: z-normalising with %d held-out validation clip(s) of %s", path, len(val_paths), ckpt)
    return refs


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
    min_clips: int = 10,
    method: str = "auto",
    grid_step: float = 0.1,
    per_machine: bool = False,
    loso: bool = True,
    seed: int = 0,
    references: References | None = None,
) -> dict[str, Any]:
    """Fuse score tables into ``out_dir`` (see module docstring); with ``tune``, search the weights first.

    Returns a dict with the written paths (``fused``, ``weights``, ``submission``, ``tuning``),
    the ``rule`` and ``weights`` used, the ``official_score`` of the fused labelled test rows (or
    None without labels), ``tune_result`` (a TuneResult or None) and a printable ``report``.
    ``references`` (detector id -> held-out train clip paths) defaults to
    :func:`discover_references` of ``score_paths``.
    """
    from hybrid_asd.evaluation.metrics import evaluate_scores
    from hybrid_asd.evaluation.submission import write_submission
    from hybrid_asd.evaluation.thresholds import section_thresholds

    out_dir = Path(out_dir)
    tables = read_score_tables(score_paths)
    detectors = [t.detector for t in tables]
    if references is None and normalise == "znorm":
        references = discover_references(score_paths)
    tune_result = None
    tuning_path = None
    if tune:
        if weights:
            log.warning("--tune: the given weights are ignored; tuning searches new ones")
        tune_result = tune_weights(
            tables, protocol=protocol, method=method, grid_step=grid_step, per_machine=per_machine, seed=seed,
            rule=rule, normalise=normalise, per_domain=per_domain, min_clips=min_clips, loso=loso,
            references=references,
        )
        weights = tune_result.weights
        tuning_path = out_dir / "tuning.txt"
        atomic_write_text(tuning_path, tune_result.format() + "\n")
        tune_result.to_yaml(out_dir / "weights.yaml")
    else:
        write_weights_yaml(
            out_dir / "weights.yaml",
            ensemble_section(rule, dict(weights or {}), normalise, per_domain, detectors, min_clips),
            ["Fusion settings used by 'hybrid-asd fuse' (missing weights are 1.0)"],
        )

    fused = fuse(tables, rule=rule, weights=weights, normalise=normalise, per_domain=per_domain,
                 min_clips=min_clips, references=references)
    fused.to_csv(out_dir / "fused.csv")
    thresholds = section_thresholds(fused, thresholds_quantile)
    files = write_submission(fused, out_dir / "submission", thresholds)

    official = None
    if any(c.split == "test" and c.label in ("normal", "anomaly") for c in fused.clips):
        official = evaluate_scores(fused, protocol=protocol).official_score
    report_lines = [tune_result.format()] if tune_result is not None else []
    report_lines.append(f"fused {len(tables)} detector(s) ({', '.join(detectors)}) with rule {rule}")
    if official is not None:
        report_lines.append(f"official score ({protocol}) of the fused labelled test clips: {official:.4f}")
    log.info("fused scores: %s; %d submission file(s)", out_dir / "fused.csv", len(files))
    return {
        "fused": out_dir / "fused.csv",
        "weights": out_dir / "weights.yaml",
        "submission": out_dir / "submission",
        "submission_files": files,
        "tuning": tuning_path,
        "rule": rule,
        "weights_used": weights,
        "detectors": detectors,
        "official_score": official,
        "tune_result": tune_result,
        "report": "\n".join(report_lines),
    }
