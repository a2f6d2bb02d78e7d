"""Detection metrics and result tables, computed exactly as the official DCASE evaluators do.

Two protocols:

``dcase2021`` (y-kawagu/dcase2021_task2_evaluator)
    One result row per (machine, section, domain): AUC and pAUC from the clips of that domain
    only; precision, recall and F1 from the decision results of the same clips.

``dcase2022`` (Kota-Dohi/dcase2022_evaluator, also used in 2023-2025)
    AUC of a domain: the normal clips of that domain against the anomalous clips of *both*
    domains of the section. pAUC: once per section, over all its clips (both domains).
    Precision, recall and F1 per domain from that domain's clips. The official score counts each
    section's pAUC once; the per-domain rows repeat it (as the evaluator's tables do).
    One deliberate difference: the 2022 evaluator's per-machine "source/target harmonic mean"
    rows slice its table at ``len(section_ids)//2`` (a bug, fixed in the 2023+ evaluators that
    slice at half the columns); here they are the source rows and the target rows.

``dcase2025`` (DCASE 2025 and 2026, as the official baseline computes them; see
:mod:`hybrid_asd.evaluation.dcase2025`)
    The numbers of ``dcase2022`` (same AUC, section pAUC and official score), plus each domain's
    pAUC over its own clips (``ResultRow.pauc_domain``) and the baseline's result table and summary
    (``h-mean`` / ``a-mean`` per metric, ``TOTAL score``).

pAUC is ``sklearn.metrics.roc_auc_score(..., max_fpr=0.1)`` (McClish-standardised) and harmonic
means clamp values at machine epsilon first, as the evaluators do. Means are taken over the same
array layouts as the evaluators (rows x metrics for 2021, metrics x rows for 2022), so the
floating-point summation order matches too.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import scipy.stats
from sklearn import metrics as skm

from hybrid_asd.errors import ConfigError, ScoreError
from hybrid_asd.evaluation.settings import PROTOCOLS, SECTION_PAUC_PROTOCOLS
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

METRICS = ("auc", "pauc", "precision", "recall", "f1")
METRIC_TITLES = ("AUC", "pAUC", "precision", "recall", "F1 score")
DOMAIN_ORDER = ("source", "target")
EPS = sys.float_info.epsilon

Key = tuple[str, int, str]  # (machine, section, domain)
Decisions = Mapping[Key, Mapping[str, int]]  # key -> {file name: 0|1}


# --- single-section metrics ---------------------------------------------------------------
def auc_pauc(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray,
             max_fpr: float = 0.1) -> tuple[float, float]:
    """AUC and pAUC exactly as ``roc_auc_score(y_true, y_score[, max_fpr])``.

    ``y_true`` is 1 for anomalous clips, 0 for normal ones; ``y_score`` higher = more anomalous.
    Raises ValueError when a class is missing or the inputs do not match.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y_true.shape != y_score.shape:
        raise ValueError(f"{y_true.size} labels but {y_score.size} scores")
    if not np.all(np.isfinite(y_score)):
        raise ValueError(f"{int(np.sum(~np.isfinite(y_score)))} non-finite score(s)")
    n_anomaly = int(np.sum(y_true == 1))
    n_normal = int(np.sum(y_true == 0))
    if n_anomaly + n_normal != y_true.size:
        raise ValueError(f"labels must be 0 (normal) or 1 (anomaly), got {sorted(set(y_true.tolist()))}")
    if n_anomaly == 0 or n_normal == 0:
        raise ValueError(
            f"AUC needs both normal and anomalous clips; got {n_normal} normal and {n_anomaly} anomalous"
        )
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    # roc_auc_score(y, s) and roc_auc_score(y, s, max_fpr=p) each validate the inputs and build the same ROC
    # curve; this is their code for binary labels (sklearn's `_binary_roc_auc_score`) run on one curve, so both
    # values are roc_auc_score's to the last bit (tests/test_evaluation_metrics.py compares them on random
    # scores with ties) in a third of the time: `fuse --tune` evaluates thousands of weightings.
    fpr, tpr, _ = skm.roc_curve(y_true, y_score)
    auc = skm.auc(fpr, tpr)
    if max_fpr == 1:
        return float(auc), float(auc)
    stop = np.searchsorted(fpr, max_fpr, "right")  # add one point at max_fpr by linear interpolation
    tpr_part = np.append(tpr[:stop], np.interp(max_fpr, [fpr[stop - 1], fpr[stop]], [tpr[stop - 1], tpr[stop]]))
    fpr_part = np.append(fpr[:stop], max_fpr)
    min_area, max_area = 0.5 * max_fpr**2, max_fpr  # McClish correction: 0.5 if non-discriminant, 1 if maximal
    pauc = 0.5 * (1 + (skm.auc(fpr_part, tpr_part) - min_area) / (max_area - min_area))
    return float(auc), float(pauc)


def decision_metrics(y_true: Sequence[int] | np.ndarray,
                     decisions: Sequence[int] | np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, F1) of 0/1 decisions, as the official evaluator (0 where undefined)."""
    _, fp, fn, tp = skm.confusion_matrix(np.asarray(y_true), np.asarray(decisions), labels=[0, 1]).ravel()
    precision = tp / np.maximum(tp + fp, EPS)
    recall = tp / np.maximum(tp + fn, EPS)
    f1 = 2.0 * precision * recall / np.maximum(precision + recall, EPS)
    return float(precision), float(recall), float(f1)


def harmonic_mean(values: Iterable[float] | np.ndarray) -> float:
    """``scipy.stats.hmean`` of the values clamped at machine epsilon (as the evaluators)."""
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if arr.size == 0:
        raise ValueError("harmonic mean of no values")
    return float(scipy.stats.hmean(np.maximum(arr, EPS), axis=None))


# --- inputs -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledScores:
    """Scores of the labelled test clips of one (machine, section, domain), sorted by file name."""

    names: tuple[str, ...]
    labels: np.ndarray  # 0 normal / 1 anomaly
    scores: np.ndarray
    decisions: np.ndarray | None = None  # 0/1 decision per clip, or None

    @classmethod
    def build(cls, names: Sequence[str], labels: Sequence[int], scores: Sequence[float],
              decisions: Sequence[int] | None = None) -> "LabelledScores":
        # The official evaluator sorts every file by clip name before aligning; so do we.
        order = sorted(range(len(names)), key=lambda i: names[i])
        return cls(
            tuple(names[i] for i in order),
            np.asarray([labels[i] for i in order], dtype=np.int64),
            np.asarray([scores[i] for i in order], dtype=np.float64),
            None if decisions is None else np.asarray([decisions[i] for i in order], dtype=np.int64),
        )


# --- results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResultRow:
    """One row of the official table. For dcase2022 and dcase2025, ``pauc`` is the section's pAUC
    (both domains) and ``auc_all`` the section's AUC over both domains; for dcase2025
    ``pauc_domain`` is the pAUC of this domain's clips alone."""

    machine: str
    section: int
    domain: str
    auc: float
    pauc: float
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    auc_all: float | None = None
    pauc_domain: float | None = None

    @property
    def section_name(self) -> str:
        return f"{self.section:02d}"

    def values(self) -> list[float | None]:
        return [self.auc, self.pauc, self.precision, self.recall, self.f1]


@dataclass(frozen=True)
class Summary:
    """Means over a set of rows, metric name -> value (None: metric absent, e.g. no decisions)."""

    arithmetic_mean: dict[str, float | None]
    harmonic_mean: dict[str, float | None]
    source_harmonic_mean: dict[str, float | None] | None  # None when no source rows
    target_harmonic_mean: dict[str, float | None] | None  # None when no target rows


@dataclass
class Results:
    """Evaluation results: rows in the official order, summaries and the official score."""

    protocol: str
    max_fpr: float
    rows: list[ResultRow]
    official_score: float
    machines: dict[str, Summary]
    overall: Summary
    # Per (machine, section): (labels, scores) over both domains, for the dcase2022 CI row.
    section_data: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False
    )
    # (machine, section, domain) units that could not be evaluated, and why (e.g. no anomalous clips)
    skipped: list[tuple[Key, str]] = field(default_factory=list)

    @property
    def has_decisions(self) -> bool:
        return bool(self.rows) and self.rows[0].precision is not None

    def machine_rows(self, machine: str) -> list[ResultRow]:
        return [r for r in self.rows if r.machine == machine]

    def by_domain(self) -> dict[str, dict[str, float]]:
        """Domain -> {"auc": harmonic mean, "pauc": harmonic mean} over all machines and sections."""
        out: dict[str, dict[str, float]] = {}
        for domain, summary in (("source", self.overall.source_harmonic_mean),
                                ("target", self.overall.target_harmonic_mean)):
            if summary is not None:
                out[domain] = {"auc": summary["auc"], "pauc": summary["pauc"]}  # type: ignore[dict-item]
        return out

    # -- output --------------------------------------------------------------------------
    def format(self) -> str:
        """A readable console table."""
        head = f"{'machine':<14}{'section':>8}  {'domain':<8}" + "".join(f"{t[:9]:>10}" for t in METRIC_TITLES)
        lines = [f"protocol {self.protocol}, pAUC max FPR {self.max_fpr}", head, "-" * len(head)]

        def cells(values: Sequence[float | None]) -> str:
            return "".join(f"{'-' if v is None else f'{v:.4f}':>10}" for v in values)

        def summary_lines(label: str, summary: Summary) -> list[str]:
            out = [f"{label:<14}{'':>8}  {'a-mean':<8}" + cells(_ordered(summary.arithmetic_mean)),
                   f"{'':<14}{'':>8}  {'h-mean':<8}" + cells(_ordered(summary.harmonic_mean))]
            for name, part in (("source h", summary.source_harmonic_mean),
                               ("target h", summary.target_harmonic_mean)):
                if part is not None:
                    out.append(f"{'':<14}{'':>8}  {name:<8}" + cells(_ordered(part)))
            return out

        for machine, summary in self.machines.items():
            for row in self.machine_rows(machine):
                lines.append(f"{machine:<14}{row.section_name:>8}  {row.domain:<8}" + cells(row.values()))
            lines.extend(summary_lines(machine, summary))
            lines.append("")
        lines.extend(summary_lines("all", self.overall))
        lines.append(f"official score (h-mean of all AUC and pAUC): {self.official_score:.4f}")
        for (machine, section, domain), reason in self.skipped:
            lines.append(f"not evaluated: {machine} section {section:02d} {domain}: {reason}")
        return "\n".join(lines)

    def official_rows(self, ci95: bool = False) -> list[list[str]]:
        """The official evaluator's CSV table as rows of text cells (see :func:`to_official_csv`)."""
        if self.protocol == "dcase2025":
            from hybrid_asd.evaluation.dcase2025 import official_rows_2025  # the baseline's layout

            return official_rows_2025(self)
        if self.protocol == "dcase2022":
            return _official_rows_2022(self, ci95)
        return _official_rows_2021(self)

    def to_official_csv(self, path: str | Path, ci95: bool = False) -> None:
        """Write the table in the official evaluator's exact CSV layout (atomically).

        Numbers are written with ``repr`` (shortest round-trip form), as the evaluator's
        ``csv.writer`` does; metrics that were not computed (no decision results) are empty.
        For dcase2022, ``ci95=True`` adds the evaluator's jackknife ``official score ci95`` row
        (2 x N AUC computations over all N clips: slow for full evaluation sets).
        """
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(self.official_rows(ci95=ci95))
        atomic_write_text(path, buf.getvalue())
        log.info("wrote official result table %s", path)

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "max_fpr": self.max_fpr,
            "official_score": self.official_score,
            "by_domain": self.by_domain(),
            "rows": [asdict(r) for r in self.rows],
            "machines": {m: asdict(s) for m, s in self.machines.items()},
            "overall": asdict(self.overall),
        }

    def to_json(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())


def _ordered(summary: Mapping[str, float | None]) -> list[float | None]:
    return [summary.get(m) for m in METRICS]


def _cell(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _official_rows_2021(res: Results) -> list[list[str]]:
    header = list(METRIC_TITLES)
    lines: list[list[str]] = []
    for machine, summary in res.machines.items():
        lines.append([machine])
        lines.append(["section", "domain", *header])
        for row in res.machine_rows(machine):
            lines.append([f"{row.section:02d}", row.domain, *map(_cell, row.values())])
        lines.extend(_summary_lines(summary, ""))
        lines.append([])
    lines.append(["", "", *header])
    lines.extend(_summary_lines(res.overall, " over all machine types, sections, and domains"))
    lines.append([])
    lines.append(["official score", "", repr(res.official_score)])
    lines.append([])
    return lines


def _official_rows_2022(res: Results, ci95: bool) -> list[list[str]]:
    columns = ["AUC (all)", "AUC (source)", "AUC (target)", "pAUC", "precision (source)", "precision (target)",
               "recall (source)", "recall (target)", "F1 score (source)", "F1 score (target)"]
    lines: list[list[str]] = []
    for machine, summary in res.machines.items():
        lines.append([machine])
        lines.append(["section", *columns])
        rows = res.machine_rows(machine)
        for section in sorted({r.section for r in rows}):
            by_dom = {r.domain: r for r in rows if r.section == section}
            any_row = next(iter(by_dom.values()))

            def get(domain: str, attr: str) -> str:
                row = by_dom.get(domain)
                return "" if row is None else _cell(getattr(row, attr))

            lines.append([f"{section:02d}", _cell(any_row.auc_all), get("source", "auc"), get("target", "auc"),
                          _cell(any_row.pauc)]
                         + [get(d, attr) for attr in ("precision", "recall", "f1") for d in DOMAIN_ORDER])
        lines.append(["", "", *METRIC_TITLES])
        lines.extend(_summary_lines(summary, ""))
        lines.append([])
    lines.append(["", "", *METRIC_TITLES])
    lines.extend(_summary_lines(res.overall, " over all machine types, sections, and domains"))
    lines.append([])
    lines.append(["official score", "", repr(res.official_score)])
    if ci95:
        lines.append(["official score ci95", "", repr(official_ci95(res))])
    lines.append([])
    return lines


def _summary_lines(summary: Summary, suffix: str) -> list[list[str]]:
    out = [[f"arithmetic mean{suffix}", "", *map(_cell, _ordered(summary.arithmetic_mean))],
           [f"harmonic mean{suffix}", "", *map(_cell, _ordered(summary.harmonic_mean))]]
    for name, part in (("source", summary.source_harmonic_mean), ("target", summary.target_harmonic_mean)):
        if part is not None:
            out.append([f"{name} harmonic mean{suffix}", "", *map(_cell, _ordered(part))])
    return out


# --- jackknife CI (dcase2022 evaluator) ------------------------------------------------------
def jackknife_ci95(fn: Callable[[np.ndarray, np.ndarray], float], y_true: np.ndarray,
                   y_score: np.ndarray) -> float:
    """95 % confidence half-width of ``fn`` by leave-one-out jackknife (Mesaros et al. 2019),
    as the dcase2022 evaluator computes it."""
    n = len(y_true)
    keep = np.ones(n, dtype=bool)
    leave_one_out = np.empty(n)
    for i in range(n):
        keep[i] = False
        leave_one_out[i] = fn(y_true[keep], y_score[keep])
        keep[i] = True
    sigma = np.sqrt(np.sum((leave_one_out - np.mean(leave_one_out)) ** 2) / (n * (n - 1)))
    t_crit = np.abs(scipy.stats.t.ppf((1 - 0.95) / 2, n - 1))
    return float(t_crit * sigma)


def official_ci95(res: Results) -> float:
    """Mean of the jackknife CI95 of AUC and pAUC over all clips pooled (dcase2022 evaluator)."""
    if not res.section_data:
        raise ScoreError("these results carry no per-clip data for the confidence interval")
    y_true = np.concatenate([v[0] for v in res.section_data.values()])
    y_score = np.concatenate([v[1] for v in res.section_data.values()])
    auc_ci = jackknife_ci95(skm.roc_auc_score, y_true, y_score)
    pauc_ci = jackknife_ci95(lambda a, b: skm.roc_auc_score(a, b, max_fpr=res.max_fpr), y_true, y_score)
    return float(np.mean([auc_ci, pauc_ci]))


# --- evaluation -------------------------------------------------------------------------------
def check_protocol(protocol: str, max_fpr: float) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if not (isinstance(max_fpr, (int, float)) and 0.0 < max_fpr <= 1.0):
        raise ConfigError(f"evaluation max_fpr must be in (0, 1], got {max_fpr!r}")


def _section_auc_pauc(key: object, y_true: np.ndarray, y_score: np.ndarray, max_fpr: float) -> tuple[float, float]:
    try:
        return auc_pauc(y_true, y_score, max_fpr)
    except ValueError as exc:
        raise ScoreError(f"{key}: {exc}") from None


def _decision_cells(data: LabelledScores) -> dict[str, float | None]:
    if data.decisions is None:
        return {}
    precision, recall, f1 = decision_metrics(data.labels, data.decisions)
    return {"precision": precision, "recall": recall, "f1": f1}


def _sort_rows(rows: list[ResultRow]) -> list[ResultRow]:
    """Official order: machines sorted as Python strings; per machine all source sections, then target."""
    return sorted(rows, key=lambda r: (r.machine, DOMAIN_ORDER.index(r.domain), r.section))


def missing_class(data: LabelledScores) -> str | None:
    """Why a unit's AUC cannot be computed (it lacks normal or anomalous clips), or None."""
    n_anomaly = int(np.sum(data.labels == 1))
    n_normal = int(data.labels.size - n_anomaly)
    if n_anomaly and n_normal:
        return None
    lacking = "anomalous" if not n_anomaly else "normal"
    return f"no {lacking} clips ({n_normal} normal, {n_anomaly} anomalous): AUC and pAUC need both"


def _rows_2021(groups: Mapping[Key, LabelledScores], max_fpr: float) -> list[ResultRow]:
    rows = []
    for (machine, section, domain), data in groups.items():
        auc, pauc = _section_auc_pauc((machine, section, domain), data.labels, data.scores, max_fpr)
        rows.append(ResultRow(machine, section, domain, auc, pauc, **_decision_cells(data)))
    return rows


def _rows_2022(groups: Mapping[Key, LabelledScores], max_fpr: float, domain_pauc: bool = False
               ) -> tuple[list[ResultRow], dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]]:
    rows = []
    section_data = {}
    for machine, section in sorted({(m, s) for m, s, _ in groups}):
        parts = {d: groups[(machine, section, d)] for d in DOMAIN_ORDER if (machine, section, d) in groups}
        labels = np.concatenate([p.labels for p in parts.values()])
        scores = np.concatenate([p.scores for p in parts.values()])
        domains = np.concatenate([np.full(len(p.labels), d) for d, p in parts.items()])
        auc_all, pauc = _section_auc_pauc((machine, section), labels, scores, max_fpr)
        section_data[(machine, section)] = (labels, scores)
        for domain, data in parts.items():
            # Normals of this domain against the anomalies of both domains.
            mask = (domains == domain) | (labels != 0)
            auc, _ = _section_auc_pauc((machine, section, domain), labels[mask], scores[mask], max_fpr)
            extra = {}
            if domain_pauc and missing_class(data) is None:  # dcase2025: this domain's clips alone
                # (reported, not scored: a domain with normal clips only keeps its AUC, this stays None)
                extra["pauc_domain"] = _section_auc_pauc((machine, section, domain), data.labels, data.scores,
                                                         max_fpr)[1]
            rows.append(ResultRow(machine, section, domain, auc, pauc, auc_all=auc_all, **extra,
                                  **_decision_cells(data)))
    return rows, section_data


def _means(matrix: np.ndarray, transposed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise arithmetic and clamped harmonic means of a rows x metrics matrix.

    ``transposed`` reduces a metrics x rows copy along axis 1 (the dcase2022 evaluator's layout);
    the two layouts sum in a different order, so matching them keeps results bit-identical.
    """
    if transposed:
        arr, axis = np.ascontiguousarray(matrix.T), 1
    else:
        arr, axis = np.ascontiguousarray(matrix), 0
    return np.mean(arr, axis=axis), scipy.stats.hmean(np.maximum(arr, EPS), axis=axis)


def _as_dict(values: np.ndarray, n_metrics: int) -> dict[str, float | None]:
    return {m: (float(values[i]) if i < n_metrics else None) for i, m in enumerate(METRICS)}


def _summary(rows: list[ResultRow], n_metrics: int, transposed: bool) -> Summary:
    matrix = np.array([r.values()[:n_metrics] for r in rows], dtype=float)
    amean, hmean = _means(matrix, transposed)
    parts: dict[str, dict[str, float | None] | None] = {}
    for domain in DOMAIN_ORDER:
        sub = np.array([r.values()[:n_metrics] for r in rows if r.domain == domain], dtype=float)
        parts[domain] = _as_dict(_means(sub, transposed)[1], n_metrics) if len(sub) else None
    return Summary(_as_dict(amean, n_metrics), _as_dict(hmean, n_metrics), parts["source"], parts["target"])


def _official_score(rows: list[ResultRow], protocol: str) -> float:
    aucs = [r.auc for d in DOMAIN_ORDER for r in rows if r.domain == d]
    if protocol in SECTION_PAUC_PROTOCOLS:
        paucs = list({(r.machine, r.section): r.pauc for r in rows}.values())  # one pAUC per section
    else:
        paucs = [r.pauc for d in DOMAIN_ORDER for r in rows if r.domain == d]
    return harmonic_mean(aucs + paucs)


def evaluate_labelled(groups: Mapping[Key, LabelledScores], protocol: str = "dcase2021",
                      max_fpr: float = 0.1) -> Results:
    """Results of labelled scores grouped by (machine, section, domain) under a protocol."""
    check_protocol(protocol, max_fpr)
    if not groups:
        raise ScoreError("no labelled test clips to evaluate")
    skipped = skipped_units(groups, protocol)
    if skipped:
        for (machine, section, domain), reason in skipped:
            log.warning("%s section %02d %s not evaluated: %s", machine, section, domain, reason)
        groups = {k: g for k, g in groups.items() if k not in dict(skipped)}
        if not groups:
            raise ScoreError("no (machine, section, domain) has both normal and anomalous test clips: "
                             + "; ".join(f"{m} section {s:02d} {d}: {r}" for (m, s, d), r in skipped[:4]))
    with_decisions = {k for k, g in groups.items() if g.decisions is not None}
    if with_decisions and len(with_decisions) != len(groups):
        missing = sorted(set(groups) - with_decisions)
        raise ScoreError(f"decision results given for some sections but not for {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}")
    section_data: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    if protocol in SECTION_PAUC_PROTOCOLS:
        rows, section_data = _rows_2022(groups, max_fpr, domain_pauc=protocol == "dcase2025")
    else:
        rows = _rows_2021(groups, max_fpr)
    rows = _sort_rows(rows)
    n_metrics = 5 if with_decisions else 2
    transposed = protocol in SECTION_PAUC_PROTOCOLS
    machines = {m: _summary([r for r in rows if r.machine == m], n_metrics, transposed)
                for m in sorted({r.machine for r in rows})}
    # The 2022 evaluator stacks all source rows before all target rows; 2021 keeps machine order.
    overall_rows = sorted(rows, key=lambda r: DOMAIN_ORDER.index(r.domain)) if transposed else rows
    overall = _summary(overall_rows, n_metrics, transposed)
    return Results(protocol, float(max_fpr), rows, _official_score(rows, protocol), machines, overall,
                   section_data, skipped)


def skipped_units(groups: Mapping[Key, LabelledScores], protocol: str) -> list[tuple[Key, str]]:
    """The units that cannot be evaluated and why: dcase2021 needs normal and anomalous clips per
    (machine, section, domain); dcase2022 and dcase2025 (the same AUC and section pAUC) normal clips
    per domain and anomalous ones per section."""
    if protocol not in SECTION_PAUC_PROTOCOLS:
        return [(key, reason) for key, data in groups.items() if (reason := missing_class(data)) is not None]
    out = []
    anomalous_sections = {(m, s) for (m, s, _), g in groups.items() if np.any(g.labels == 1)}
    for (machine, section, domain), data in groups.items():
        n_normal = int(np.sum(data.labels == 0))
        if not n_normal:
            out.append(((machine, section, domain), f"no normal clips ({int(data.labels.size)} anomalous)"))
        elif (machine, section) not in anomalous_sections:
            out.append(((machine, section, domain), f"no anomalous clips in section {section:02d} "
                                                    f"({n_normal} normal)"))
    return out


def groups_from_table(table: ScoreTable, decisions: Decisions | None = None) -> dict[Key, LabelledScores]:
    """Labelled test rows of a score table grouped by (machine, section, domain)."""
    test = table.select(split="test")
    keep = [i for i, c in enumerate(test.clips) if c.label in ("normal", "anomaly")]
    test = ScoreTable(test.detector, [test.clips[i] for i in keep], test.scores[keep])
    test.check_finite()
    raw: dict[Key, tuple[list[str], list[int], list[float]]] = {}
    for clip, score in zip(test.clips, test.scores):
        names, labels, scores = raw.setdefault((clip.machine, clip.section, clip.domain), ([], [], []))
        names.append(clip.name)
        labels.append(int(clip.is_anomaly))
        scores.append(float(score))
    groups = {}
    for key, (names, labels, scores) in raw.items():
        dupes = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
        if dupes:
            raise ScoreError(f"detector {table.detector!r} {key}: clip name(s) listed twice: {dupes[:3]}")
        dec = None
        if decisions is not None:
            if key not in decisions:
                raise ScoreError(f"no decision results for {key}")
            missing = [n for n in names if n not in decisions[key]]
            if missing:
                raise ScoreError(f"decision results for {key} lack {len(missing)} clip(s), e.g. {missing[0]}")
            dec = [int(decisions[key][n]) for n in names]
        groups[key] = LabelledScores.build(names, labels, scores, dec)
    return groups


def evaluate_scores(table: ScoreTable, protocol: str = "dcase2021", max_fpr: float = 0.1,
                    decisions: Decisions | None = None) -> Results:
    """Evaluate a score table on its labelled test rows (``split == "test"``, label normal/anomaly).

    ``decisions`` maps (machine, section, domain) -> {clip file name: 0|1}; without it the
    precision, recall and F1 cells are None (see ``thresholds.decisions_from_thresholds``).
    """
    check_protocol(protocol, max_fpr)
    groups = groups_from_table(table, decisions)
    if not groups:
        raise ScoreError(f"detector {table.detector!r}: no labelled test clips to evaluate")
    return evaluate_labelled(groups, protocol, max_fpr)

