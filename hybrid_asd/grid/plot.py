"""``hybrid-asd report EXP_ROOT/grid``: the grid's per-approach means with error bars.

Reads ``summary.json`` (written by the grid) and draws ``approaches.png``: left, each approach's
official score over all machine types (mean ± sample std over seeds), then each cross-approach
fusion (hatched: its leave-one-section-out estimate when tuned, else its official score); right,
per machine type, the approaches side by side. Error bars are the standard deviations of the
summary's tables, so the figure and ``summary.md`` show the same numbers.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hybrid_asd.ensemble.fusion import FUSED_NAME
from hybrid_asd.errors import StageError
from hybrid_asd.evaluation.plots import png_bytes, series_color
from hybrid_asd.experiment import GridFiles
from hybrid_asd.utils import atomic_write_bytes

log = logging.getLogger(__name__)


def _mean_std(entry: Mapping[str, Any], metric: str = "official_score") -> tuple[float, float]:
    value = entry.get(metric) or {}
    mean = value.get("mean")
    std = value.get("std")
    return (float("nan") if mean is None else mean), (0.0 if std is None else std)


def fusion_stats(per_seed: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """Mean and sample std (0 for one seed) over seeds of a fusion's LOSO estimate (tuned) or official score."""
    key = "loso" if per_seed and per_seed[0].get("loso") is not None else "official_score"
    values = np.asarray([r[key] for r in per_seed if r.get(key) is not None], dtype=float)
    if values.size == 0:
        return math.nan, 0.0
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def plot_grid(folder: str | Path) -> Path:
    """Write ``approaches.png`` into the grid folder; returns its path."""
    files = GridFiles.in_folder(folder)
    if not files.summary_json.is_file():
        raise StageError(f"{folder}: no summary.json; run 'hybrid-asd grid' first")
    summary = json.loads(files.summary_json.read_text())
    approaches: Sequence[str] = summary["approaches"]
    overall = {e["approach"]: e for e in summary["by_table"] if e["table"] == FUSED_NAME}
    machines: Sequence[str] = summary["machines"]
    by_machine = {(e["approach"], e["machine"]): e for e in summary["by_machine"]}
    fig = Figure(figsize=(5 + 1.6 * len(machines) + 0.6 * len(approaches), 4.5))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, max(1, len(machines))]})
    stats = [_mean_std(overall[a]) if a in overall else (float("nan"), 0.0) for a in approaches]
    colours = [series_color(i) for i in range(len(approaches))]
    left.bar(range(len(approaches)), [m for m, _ in stats], yerr=[s for _, s in stats], capsize=4, color=colours)
    fusions = {name: fusion_stats(per_seed) for name, per_seed in (summary.get("fusions") or {}).items() if per_seed}
    xs = range(len(approaches), len(approaches) + len(fusions))
    left.bar(xs, [m for m, _ in fusions.values()], yerr=[s for _, s in fusions.values()], capsize=4, color="white",
             edgecolor="black", hatch="//")
    tuned = {name for name, per_seed in (summary.get("fusions") or {}).items() if per_seed and "loso" in per_seed[0]}
    labels = list(approaches) + [f"fusion {name}" + (" (LOSO)" if name in tuned else "") for name in fusions]
    left.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    left.set_title("all machine types")
    left.set_ylabel(f"official score (mean ± std over {len(summary['seeds'])} seed(s))")
    width = 0.8 / max(1, len(approaches))
    for i, approach in enumerate(approaches):
        values = [_mean_std(by_machine[(approach, m)]) if (approach, m) in by_machine else (float("nan"), 0.0)
                  for m in machines]
        xs = [j + (i - (len(approaches) - 1) / 2) * width for j in range(len(machines))]
        right.bar(xs, [m for m, _ in values], width, yerr=[s for _, s in values], capsize=3, color=colours[i],
                  label=approach)
    right.set_xticks(range(len(machines)), machines)
    right.set_title("per machine type")
    right.legend(fontsize="small")
    means = [m for m, _ in stats] + [m for m, _ in fusions.values()] + [_mean_std(e)[0] for e in summary["by_machine"]]
    low = min((m for m in means if m == m), default=0.5)  # m == m: not NaN
    for ax in (left, right):
        ax.set_ylim(max(0.0, min(0.5, low - 0.05)), 1.0)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    fig.tight_layout()
    atomic_write_bytes(files.figure, png_bytes(fig))
    log.info("wrote %s", files.figure)
    return files.figure


__all__ = ["fusion_stats", "plot_grid"]
