"""Report figures: ROC curves, score histograms, embedding maps and training curves.

Every function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot``), so no global
backend or figure registry is touched and nothing has to be closed; :func:`png_bytes` renders a
figure with the headless Agg canvas. The functions only draw: the numbers they show (AUC, pAUC,
thresholds) are computed by the caller (``hybrid_asd.evaluation.report``) and passed in as text.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

DPI = 110
NORMAL_COLOR = "C0"
ANOMALY_COLOR = "C1"
UNLABELLED_COLOR = "0.55"
THRESHOLD_COLOR = "C3"


# --- helpers ------------------------------------------------------------------------------------
def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure rendered as PNG by the Agg canvas."""
    FigureCanvasAgg(fig)  # attaches itself to the figure: rendering never depends on the global backend
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def series_color(index: int) -> str:
    """Colour of the ``index``-th detector (or experiment/detector pair): the default cycle."""
    return f"C{index % 10}"


def group_color(index: int, domain: str) -> tuple[float, float, float]:
    """Colour of section ``index`` in ``domain``: tab20's dark shade for source, light for target."""
    return colormaps["tab20"].colors[2 * (index % 10) + (domain == "target")]


# --- ROC curves ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RocCurve:
    """One ROC curve to draw; ``label`` is its legend text (numbers included)."""

    label: str
    fpr: np.ndarray
    tpr: np.ndarray
    color: str
    linestyle: str = "-"


def roc_figure(curves: Sequence[RocCurve], title: str, max_fpr: float) -> tuple[Figure, list[str]]:
    """ROC curves in one axes with the pAUC region (FPR <= ``max_fpr``) shaded.

    Returns the figure and the legend texts as drawn (the shaded region's entry first).
    """
    fig = Figure(figsize=(7.0, 5.6))
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.09, top=0.94)
    ax = fig.subplots()
    ax.axvspan(0.0, max_fpr, color="0.88", label=f"pAUC region (FPR \u2264 {max_fpr:g})")
    ax.plot([0.0, 1.0], [0.0, 1.0], linestyle=":", color="0.5", linewidth=1.0)
    for curve in curves:
        ax.plot(curve.fpr, curve.tpr, color=curve.color, linestyle=curve.linestyle, linewidth=1.6,
                label=curve.label)
    ax.set(xlim=(0.0, 1.0), ylim=(0.0, 1.02), xlabel="false positive rate", ylabel="true positive rate",
           title=title)
    ax.grid(alpha=0.3)
    legend = ax.legend(loc="lower right", fontsize="small", framealpha=0.9)
    return fig, [t.get_text() for t in legend.get_texts()]


# --- score histograms ---------------------------------------------------------------------------
@dataclass(frozen=True)
class HistPanel:
    """Test-clip scores of one (machine, section, domain) and its decision threshold."""

    title: str
    normal: np.ndarray
    anomaly: np.ndarray
    unlabelled: np.ndarray = field(default_factory=lambda: np.zeros(0))
    threshold: float | None = None


def histogram_figure(panels: Sequence[HistPanel], n_cols: int, title: str, bins: int = 30) -> Figure:
    """A grid of score histograms (normal vs anomalous clips), the threshold as a dashed line.

    Panels fill the grid row by row; the bins of a panel are shared by its classes.
    """
    n_rows = max(1, -(-len(panels) // n_cols))
    height = 2.8 * n_rows + 0.7
    fig = Figure(figsize=(5.4 * n_cols, height))
    # Fixed margins (in inches, converted to fractions): a constrained layout doubles the drawing time.
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.5 / height, top=1 - 0.65 / height, hspace=0.62, wspace=0.22)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).reshape(-1)
    for ax, panel in zip(axes, panels):
        _histogram_panel(ax, panel, bins)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def _histogram_panel(ax, panel: HistPanel, bins: int) -> None:
    values = [v for v in (panel.normal, panel.anomaly, panel.unlabelled) if len(v)]
    ax.set_title(panel.title, fontsize="medium")
    if not values:
        ax.text(0.5, 0.5, "no test clips", ha="center", va="center", transform=ax.transAxes)
        return
    everything = np.concatenate(values)
    if panel.threshold is not None:
        everything = np.append(everything, panel.threshold)  # keep the threshold inside the bin range
    edges = np.histogram_bin_edges(everything, bins=bins)
    for scores, color, name in ((panel.normal, NORMAL_COLOR, "normal"), (panel.anomaly, ANOMALY_COLOR, "anomaly"),
                                (panel.unlabelled, UNLABELLED_COLOR, "unlabelled")):
        if len(scores):
            ax.hist(scores, bins=edges, histtype="stepfilled", color=color, alpha=0.5, edgecolor=color,
                    label=f"{name} ({len(scores)})")
    if panel.threshold is not None:
        ax.axvline(panel.threshold, color=THRESHOLD_COLOR, linestyle="--", linewidth=1.5,
                   label=f"threshold {panel.threshold:.4g}")
    ax.set(xlabel="anomaly score", ylabel="clips")
    ax.legend(fontsize="x-small")


# --- embedding map ------------------------------------------------------------------------------
# Marker, size and opacity per kind of clip; drawn in this order (anomalies on top).
CLIP_KINDS: dict[str, tuple[str, float, float]] = {
    "train": (".", 24.0, 0.45),
    "test normal": ("o", 22.0, 0.8),
    "test unlabelled": ("s", 18.0, 0.6),
    "test anomaly": ("X", 42.0, 0.9),
}


def embedding_figure(xy: np.ndarray, groups: Sequence[str], kinds: Sequence[str],
                     colors: Mapping[str, object], title: str, axis_labels: tuple[str, str]) -> Figure:
    """Scatter plot of 2-D points: colour by group (section and domain), marker by clip kind.

    ``groups[i]`` names the colour group of point ``i`` (a key of ``colors``), ``kinds[i]`` one of
    :data:`CLIP_KINDS`. Two legends: the colour groups and the marker kinds.
    """
    xy = np.asarray(xy, dtype=float)
    groups_arr = np.asarray(groups)
    kinds_arr = np.asarray(kinds)
    fig = Figure(figsize=(9.5, 6.8), layout="constrained")
    ax = fig.subplots()
    for kind, (marker, size, alpha) in CLIP_KINDS.items():
        for group, color in colors.items():
            mask = (kinds_arr == kind) & (groups_arr == group)
            if mask.any():
                ax.scatter(xy[mask, 0], xy[mask, 1], s=size, marker=marker, color=color, alpha=alpha,
                           linewidths=0.3, edgecolors="0.2" if kind == "test anomaly" else "none")
    group_handles = [Line2D([], [], linestyle="", marker="o", markersize=7, color=color, label=group)
                     for group, color in colors.items()]
    present = [k for k in CLIP_KINDS if np.any(kinds_arr == k)]
    kind_handles = [Line2D([], [], linestyle="", marker=CLIP_KINDS[k][0], markersize=7, color="0.3", label=k)
                    for k in present]
    first = ax.legend(handles=group_handles, title="section / domain", loc="upper left",
                      bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.add_artist(first)
    ax.legend(handles=kind_handles, title="clips", loc="lower left", bbox_to_anchor=(1.01, 0.0), fontsize="small")
    ax.set(title=title, xlabel=axis_labels[0], ylabel=axis_labels[1])
    ax.grid(alpha=0.25)
    return fig


# --- training curve -----------------------------------------------------------------------------
def training_curve_figure(log: Mapping[str, np.ndarray], title: str) -> Figure:
    """Loss and accuracy per epoch, train and validation, from an extractor's ``train_log.csv``.

    ``log`` maps column names (``epoch``, ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc``)
    to arrays; columns that are absent or all NaN (no validation split) are left out.
    """
    epochs = np.asarray(log["epoch"], dtype=float)
    marker = "o" if len(epochs) <= 40 else None
    fig = Figure(figsize=(10.0, 4.0))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.83, wspace=0.22)
    axes = fig.subplots(1, 2)
    for ax, metric, ylabel in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            values = np.asarray(log.get(f"{split}_{metric}", []), dtype=float)
            if len(values) == len(epochs) and np.isfinite(values).any():
                ax.plot(epochs, values, linestyle=style, marker=marker, markersize=3,
                        label="train" if split == "train" else "validation")
        ax.set(xlabel="epoch", ylabel=ylabel, title=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig
