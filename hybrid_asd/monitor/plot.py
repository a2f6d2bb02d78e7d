"""The time series of windowed scores (``predict --window``): fused score over time with the
decision threshold, one panel per recording (``hybrid-asd report SCORES.csv``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from hybrid_asd.errors import DataError
from hybrid_asd.evaluation.plots import THRESHOLD_COLOR, png_bytes
from hybrid_asd.monitor.records import ClipScore, read_records
from hybrid_asd.utils import atomic_write_bytes


@dataclass(frozen=True)
class Series:
    """The windows of one recording, in time order."""

    path: str
    section: int
    domain: str
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray
    threshold: np.ndarray
    decision: np.ndarray


def series_of(records: list[ClipScore]) -> list[Series]:
    """One :class:`Series` per recording of the windowed records (whole-clip records are left out)."""
    by_path: dict[str, list[ClipScore]] = {}
    for r in records:
        if r.start is not None and r.end is not None:
            by_path.setdefault(r.path, []).append(r)
    out = []
    for path, rows in by_path.items():
        rows.sort(key=lambda r: r.start or 0.0)
        out.append(Series(path, rows[0].section, rows[0].domain, np.array([r.start for r in rows]),
                          np.array([r.end for r in rows]), np.array([r.score for r in rows]),
                          np.array([r.threshold for r in rows]), np.array([r.decision for r in rows])))
    return out


def series_figure(series: list[Series]) -> Figure:
    """Fused score at each window's centre, the threshold as a dashed line over the windows, anomalous
    windows shaded."""
    fig = Figure(figsize=(10, 2.8 * len(series)), layout="constrained")
    axes = fig.subplots(len(series), 1, squeeze=False)[:, 0]
    for ax, s in zip(axes, series):
        centre = (s.start + s.end) / 2
        ax.plot(centre, s.score, marker=".", color="C0", label="fused score")
        ax.step(np.r_[s.start, s.end[-1]], np.r_[s.threshold, s.threshold[-1]], where="post", linestyle="--",
                color=THRESHOLD_COLOR, label="threshold")
        for start, end in zip(s.start[s.decision == 1], s.end[s.decision == 1]):
            ax.axvspan(start, end, color=THRESHOLD_COLOR, alpha=0.08, linewidth=0)
        ax.set_title(f"{Path(s.path).name}: section {s.section:02d}, domain {s.domain}", fontsize=10)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("anomaly score")
        ax.legend(loc="best", fontsize=8)
    return fig


def plot_series(scores_path: str | Path, out: str | Path | None = None) -> Path:
    """Draw the windowed records of a predict output into ``out`` (default: beside it, ``.png``)."""
    scores_path = Path(scores_path)
    series = series_of(read_records(scores_path))
    if not series:
        raise DataError(f"{scores_path}: no windowed records to plot (score with predict --window)")
    out = Path(out) if out is not None else scores_path.with_suffix(".png")
    atomic_write_bytes(out, png_bytes(series_figure(series)))
    return out
