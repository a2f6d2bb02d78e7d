"""The DCASE 2025 / 2026 Task 2 scores as the official baseline computes them (protocol ``dcase2025``).

Read from nttcslab/dcase2023_task2_baseline_ae (head of 2026-05): the test step of
``networks/dcase2023t2_ae/dcase2023t2_ae.py`` (``DCASE2023T2AE.test``) and the summary scripts
``03_summarize_results.sh`` -> ``tools/export_results.sh`` -> ``tools/concat_divided_roc.py``,
``tools/export_results.py`` and ``tools/extract_results.py``. The same code serves 2025 and 2026.

Per section (the test step):

- ``AUC (source)``: the source-domain normal clips against the anomalous clips of *both* domains;
  ``AUC (target)`` likewise with the target-domain normal clips;
- ``pAUC``: over all the section's clips (both domains), ``roc_auc_score(..., max_fpr=0.1)``;
- ``pAUC (source)``, ``pAUC (target)``: over that domain's clips only (reported, not scored);
- precision, recall, F1 per domain from that domain's clips;
- per machine type, the rows ``arithmetic mean`` and ``harmonic mean`` of every column over its
  sections (harmonic means of values clamped at machine epsilon).

Over all machine types (``export_results.py`` / ``extract_results.py``):

- per metric, ``h-mean``: the harmonic mean over every section row of every machine type;
  ``a-mean``: the mean of the machine types' arithmetic means; each machine type's column: its
  arithmetic mean;
- ``TOTAL score``: ``h-mean`` = the harmonic mean of all ``AUC (source)``, ``AUC (target)`` and
  ``pAUC`` values of all sections (the official score), ``a-mean`` = their arithmetic mean.

These are the numbers of the protocol ``dcase2022`` (the same AUC, pAUC and official score), plus
the per-domain pAUC columns and this summary. The official evaluator of 2025
(nttcslab/dcase2025_task2_evaluator) was not available to us; the numbers here follow the
baseline's code, which its README says computes the official score's ingredients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import scipy.stats

if TYPE_CHECKING:  # annotations only: metrics imports this module when it writes the table
    from hybrid_asd.evaluation.metrics import Results, ResultRow

EPS = np.finfo(float).eps

SECTION_COLUMNS = ("AUC (source)", "AUC (target)", "pAUC", "pAUC (source)", "pAUC (target)",
                   "precision (source)", "precision (target)", "recall (source)", "recall (target)",
                   "F1 score (source)", "F1 score (target)")
SUMMARY_METRICS = ("AUC (source)", "AUC (target)", "pAUC (source, target)", "TOTAL score")
_SCORED = ("AUC (source)", "AUC (target)", "pAUC")  # the values of the TOTAL score

__all__ = ["SECTION_COLUMNS", "SUMMARY_METRICS", "section_table", "summary_table", "official_rows_2025"]


def _cells(by_domain: dict[str, "ResultRow"]) -> list[float | None]:
    src, tgt = by_domain.get("source"), by_domain.get("target")
    any_row = src or tgt
    assert any_row is not None

    def get(row: "ResultRow | None", attr: str) -> float | None:
        return None if row is None else getattr(row, attr)

    return [get(src, "auc"), get(tgt, "auc"), any_row.pauc, get(src, "pauc_domain"), get(tgt, "pauc_domain"),
            get(src, "precision"), get(tgt, "precision"), get(src, "recall"), get(tgt, "recall"),
            get(src, "f1"), get(tgt, "f1")]


def section_table(res: "Results", machine: str) -> tuple[list[int], np.ndarray]:
    """Sections of ``machine`` and their rows of :data:`SECTION_COLUMNS` (NaN where a value is
    missing: a domain without clips, or no decision results)."""
    rows = res.machine_rows(machine)
    sections = sorted({r.section for r in rows})
    values = [_cells({r.domain: r for r in rows if r.section == s}) for s in sections]
    return sections, np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)


def _amean(matrix: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.array([np.mean(c[~np.isnan(c)]) if (~np.isnan(c)).any() else np.nan for c in matrix.T])


def _hmean(matrix: np.ndarray) -> np.ndarray:
    return np.array([scipy.stats.hmean(np.maximum(c[~np.isnan(c)], EPS)) if (~np.isnan(c)).any() else np.nan
                     for c in matrix.T])


def machine_means(res: "Results", machine: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``arithmetic mean`` and ``harmonic mean`` rows of a machine type (over its sections)."""
    _, matrix = section_table(res, machine)
    return _amean(matrix), _hmean(matrix)


def summary_table(res: "Results") -> dict[str, dict[str, float]]:
    """``{metric: {"h-mean": ..., "a-mean": ..., <machine>: ...}}`` for :data:`SUMMARY_METRICS`
    (``TOTAL score`` has no per-machine values)."""
    machines = list(res.machines)
    tables = {m: section_table(res, m)[1] for m in machines}
    every = np.concatenate([tables[m] for m in machines])
    means = {m: _amean(tables[m]) for m in machines}
    out: dict[str, dict[str, float]] = {}
    for metric in SUMMARY_METRICS[:-1]:
        col = SECTION_COLUMNS.index("pAUC" if metric == "pAUC (source, target)" else metric)
        out[metric] = {"h-mean": float(_hmean(every[:, [col]])[0]),
                       "a-mean": float(np.nanmean([means[m][col] for m in machines])),
                       **{m: float(means[m][col]) for m in machines}}
    scored = every[:, [SECTION_COLUMNS.index(c) for c in _SCORED]].reshape(-1)
    scored = scored[~np.isnan(scored)]
    out["TOTAL score"] = {"h-mean": float(scipy.stats.hmean(np.maximum(scored, EPS))),
                          "a-mean": float(np.mean(scored))}
    return out


def _cell(value: float) -> str:
    return "" if value is None or np.isnan(value) else repr(float(value))


def official_rows_2025(res: "Results", machines: Sequence[str] | None = None) -> list[list[str]]:
    """The result table: per machine type the baseline's per-section table (``result_*_roc.csv``
    layout: header, one row per section, ``arithmetic mean``, ``harmonic mean``, a blank row), then
    the summary (``*_auc_pauc_extract.csv`` rows: metric, h-mean, a-mean, one column per machine
    type) and ``official score`` (the TOTAL score's h-mean)."""
    machines = list(machines or res.machines)
    lines: list[list[str]] = []
    for machine in machines:
        sections, matrix = section_table(res, machine)
        amean, hmean = machine_means(res, machine)
        lines.append([machine])
        lines.append(["section", *SECTION_COLUMNS])
        for section, row in zip(sections, matrix):
            lines.append([f"{section:02d}", *map(_cell, row)])
        lines.append(["arithmetic mean", *map(_cell, amean)])
        lines.append(["harmonic mean", *map(_cell, hmean)])
        lines.append([])
    summary = summary_table(res)
    lines.append(["metric", "h-mean", "a-mean", *machines])
    for metric in SUMMARY_METRICS:
        values = summary[metric]
        lines.append([metric, _cell(values["h-mean"]), _cell(values["a-mean"]),
                      *(_cell(values[m]) if m in values else "" for m in machines)])
    lines.append([])
    lines.append(["official score", "", repr(summary["TOTAL score"]["h-mean"])])
    lines.append([])
    return lines
