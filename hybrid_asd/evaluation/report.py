"""Experiment reports: figures and one self-contained ``report.html`` per experiment folder.

:func:`write_reports` reads what the stages left in each experiment folder (layout in
:mod:`hybrid_asd.experiment`) and writes into ``<exp>/report/``:

``roc_<machine>_section_<nn>.png``
    ROC curves of every detector of the experiment (source solid, target dashed), the pAUC
    region shaded, AUC and pAUC in the legend.
``overlay_roc_<machine>_section_<nn>.png``
    Only when several experiments are given (and ``overlay``): the same curves across
    experiments, written into *every* report, so each report stands alone.
``scores_<detector>.png``
    Histograms of the test-clip scores, normal vs anomalous, per section and domain, with the
    decision threshold (``section_thresholds`` at ``evaluation.threshold_quantile``).
``embedding_<method>.png``
    A 2-D map (PCA, t-SNE or UMAP) of the clip embeddings, coloured by section and domain,
    anomalies marked.
``training_curve.png``
    Loss and accuracy per epoch of the extractor, from ``extractor/train_log.csv``.
``report.html``
    The official table at the top, then the figures, embedded as base64 PNG data URIs: the file
    opens in any browser without a server or network.
``manifest.json``
    Figures with captions and legend entries (with their numbers), the tables and the notes.

One :class:`~hybrid_asd.evaluation.metrics.Results` per detector (``evaluate_scores`` with the
experiment's protocol and ``max_fpr``) feeds both the HTML tables and the ROC legends, so their
numbers are equal by construction. A stage that has not run is named in the report and the log
instead of raising; only a missing experiment folder or ``config.yaml`` is an error
(:class:`~hybrid_asd.errors.StageError`).

This module orchestrates; reading the folder is :mod:`~hybrid_asd.evaluation.report_data`, the
figures :mod:`~hybrid_asd.evaluation.report_figures` (drawn by :mod:`~hybrid_asd.evaluation.plots`)
and the page :mod:`~hybrid_asd.evaluation.report_html`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hybrid_asd.errors import ConfigError, StageError
from hybrid_asd.evaluation.report_data import ExperimentData, format_metric, load_experiment
from hybrid_asd.evaluation.report_figures import (
    EMBEDDING_METHODS, FigureOut, embedding_figures, histogram_figures, overlay_figures, roc_figures,
    training_figures,
)
from hybrid_asd.evaluation.report_html import build_html
from hybrid_asd.utils import atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class Report:
    """A rendered report: figures, the HTML page and the manifest (what ``manifest.json`` holds)."""

    figures: list[FigureOut]
    html: str
    manifest: dict[str, Any]


def build_report(exp: ExperimentData, *, compare: Sequence[ExperimentData] = (), embedding: str = "pca") -> Report:
    """Render the figures and the page of ``exp``; ``compare`` (two or more experiments, ``exp``
    among them) adds the cross-experiment overlay."""
    figures = roc_figures(exp)
    if len(compare) > 1:
        figures += overlay_figures(exp, compare)
    figures += histogram_figures(exp) + embedding_figures(exp, embedding) + training_figures(exp)
    page = build_html(exp, figures, compare)
    manifest = {
        "experiment": str(exp.root), "label": exp.label, "protocol": exp.protocol, "max_fpr": exp.max_fpr,
        "notes": [{"kind": n.kind, "text": n.text} for n in exp.notes],
        "results": {d.detector: d.results.to_dict() for d in exp.evaluated},  # type: ignore[union-attr]
        "figures": [f.manifest() for f in figures],
    }
    return Report(figures, page, manifest)


def _remove_stale_figures(out_dir: Path, keep: set[str]) -> None:
    """Delete figures an earlier report listed in its manifest that this one does not write."""
    old = out_dir / "manifest.json"
    if not old.is_file():
        return
    try:
        names = [f["file"] for f in json.loads(old.read_text()).get("figures", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        return
    for name in names:
        path = out_dir / str(name)
        if name not in keep and path.parent == out_dir and path.suffix == ".png" and path.is_file():
            path.unlink()


def write_report(exp: ExperimentData, *, compare: Sequence[ExperimentData] = (), embedding: str = "pca") -> Path:
    """Write ``exp``'s figures, ``manifest.json`` and ``report.html`` into ``<exp>/report/``."""
    report = build_report(exp, compare=compare, embedding=embedding)
    out_dir = exp.experiment.report_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_figures(out_dir, {f.file for f in report.figures})
    for fig in report.figures:
        atomic_write_bytes(out_dir / fig.file, fig.png)
    atomic_write_json(out_dir / "manifest.json", report.manifest)
    page = out_dir / "report.html"
    atomic_write_text(page, report.html)
    log.info("wrote %s (%d figures)", page, len(report.figures))
    return page


def experiment_labels(roots: Sequence[Path]) -> list[str]:
    """Short names of experiment folders: their paths below the common parent (the folder name
    when there is only one)."""
    if len(roots) == 1:
        return [roots[0].resolve().name or str(roots[0])]
    resolved = [r.resolve() for r in roots]
    common = Path(os.path.commonpath(resolved))
    labels = [str(r.relative_to(common)) if r != common else r.name for r in resolved]
    return labels if len(set(labels)) == len(labels) else [str(r) for r in roots]


def write_reports(exps: Sequence[str | Path], *, detectors: Sequence[str] | None = None, overlay: bool = True,
                  embedding: str = "pca") -> list[Path]:
    """Write ``report/`` into every experiment folder; returns the ``report.html`` paths.

    ``detectors``: detector ids to include (``fused`` for the fused scores; default all).
    ``overlay``: with several experiments, add ROC figures comparing them to *each* report.
    ``embedding``: ``pca`` (default), ``tsne`` or ``umap`` (PCA when umap is not installed).
    All folders are read before anything is written, so a missing folder or ``config.yaml``
    (:class:`StageError`) leaves every report untouched.
    """
    if embedding not in EMBEDDING_METHODS:
        raise ConfigError(f"unknown embedding map method {embedding!r}; known: {', '.join(EMBEDDING_METHODS)}")
    roots = [Path(e) for e in exps]
    if not roots:
        raise StageError("no experiment folders given")
    datas = [load_experiment(root, detectors=detectors, label=label)
             for root, label in zip(roots, experiment_labels(roots))]
    compare = datas if overlay and len(datas) > 1 else []
    return [write_report(d, compare=compare, embedding=embedding) for d in datas]


__all__ = [
    "ExperimentData", "FigureOut", "Report", "build_html", "build_report", "embedding_figures", "format_metric",
    "load_experiment", "roc_figures", "write_report", "write_reports",
]
