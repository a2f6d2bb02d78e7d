"""The self-contained ``report.html`` page: notes, official tables and figures as data URIs."""

from __future__ import annotations

import base64
import html
from typing import Any, Sequence

from hybrid_asd.evaluation.report_data import DetectorEval, ExperimentData, format_metric
from hybrid_asd.evaluation.report_figures import FigureOut, _pauc_name, overlay_detectors


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1150px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em}th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.summary td{background:#fafafa;font-style:italic}
tr.official td{font-weight:bold;background:#eef5ff}
.notes{border-left:4px solid #e0a000;background:#fff8e6;padding:.5em 1em;margin:1em 0}
.notes li.missing{color:#8a4b00}.notes li.problem{color:#b00020}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;margin-top:.3em}code{background:#f4f4f4;padding:0 .2em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]], numeric_from: int) -> str:
    """An HTML table; ``rows`` are (css class, cells); cells from ``numeric_from`` on are right-aligned."""
    out = ["<table>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for cls, cells in rows:
        tds = "".join(f'<td class="num">{_e(c)}</td>' if i >= numeric_from else f"<td>{_e(c)}</td>"
                      for i, c in enumerate(cells))
        out.append(f'<tr class="{cls}">{tds}</tr>' if cls else f"<tr>{tds}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _h_mean(summary: dict[str, float | None] | None, metric: str) -> str:
    return "-" if summary is None else format_metric(summary.get(metric))


def summary_table(exp: ExperimentData) -> str:
    """Official score and per-domain harmonic means of every evaluated detector."""
    rows = []
    for det in exp.evaluated:
        res = det.results
        assert res is not None
        rows.append(("", [det.detector, format_metric(res.official_score),
                          _h_mean(res.overall.source_harmonic_mean, "auc"),
                          _h_mean(res.overall.source_harmonic_mean, "pauc"),
                          _h_mean(res.overall.target_harmonic_mean, "auc"),
                          _h_mean(res.overall.target_harmonic_mean, "pauc")]))
    return _table(["detector", "official score", "AUC source (h-mean)", "pAUC source (h-mean)",
                   "AUC target (h-mean)", "pAUC target (h-mean)"], rows, 1)


def results_table(det: DetectorEval) -> str:
    """The official table of one detector: rows per section and domain, then the means."""
    res = det.results
    assert res is not None
    n = 5 if res.has_decisions else 2
    header = ["machine", "section", "domain", "AUC", _pauc_name(res.protocol), "precision", "recall", "F1"][:3 + n]
    rows: list[tuple[str, list[str]]] = []

    def summary_rows(label: str, summary) -> None:
        for name, part in (("arithmetic mean", summary.arithmetic_mean), ("harmonic mean", summary.harmonic_mean),
                           ("source harmonic mean", summary.source_harmonic_mean),
                           ("target harmonic mean", summary.target_harmonic_mean)):
            if part is not None:
                rows.append(("summary", [label, "", name, *[format_metric(part.get(m)) for m in
                                                            ("auc", "pauc", "precision", "recall", "f1")[:n]]]))

    for machine, summary in res.machines.items():
        for row in res.machine_rows(machine):
            rows.append(("", [machine, row.section_name, row.domain, *map(format_metric, row.values()[:n])]))
        summary_rows(machine, summary)
    if len(res.machines) > 1:
        summary_rows("all", res.overall)
    rows.append(("official", ["official score", "", "", format_metric(res.official_score), *[""] * (n - 1)]))
    return _table(header, rows, 3)


def clip_count_table(exp: ExperimentData) -> str:
    counts: dict[tuple[str, int, str], list[int]] = {}
    for clip in exp.clips or []:
        cell = counts.setdefault((clip.machine, clip.section, clip.domain), [0, 0, 0, 0])
        cell[0 if clip.split == "train" else {"normal": 1, "anomaly": 2}.get(clip.label, 3)] += 1
    rows = [("", [m, f"{s:02d}", d, *map(str, c)]) for (m, s, d), c in sorted(counts.items())]
    return _table(["machine", "section", "domain", "train", "test normal", "test anomalous", "test unlabelled"],
                  rows, 3)


def overlay_table(compare: Sequence[ExperimentData]) -> str:
    """AUC and pAUC per section and domain of every overlaid experiment/detector (the overlay legends)."""
    series = [(exp, det) for exp in compare for det in overlay_detectors(exp)]
    rows = []
    for exp, det in series:
        res = det.results
        assert res is not None
        for row in res.rows:
            rows.append(("", [exp.label, det.detector, row.machine, row.section_name, row.domain,
                              format_metric(row.auc), format_metric(row.pauc)]))
        rows.append(("official", [exp.label, det.detector, "official score", "", "",
                                  format_metric(res.official_score), ""]))
    return _table(["experiment", "detector", "machine", "section", "domain", "AUC", "pAUC"], rows, 5)


def _figure_html(fig: FigureOut) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (f'<figure id="{_e(fig.file)}"><img src="data:image/png;base64,{data}" alt="{_e(fig.title)}">'
            f"<figcaption><b>{_e(fig.title)}.</b> {_e(fig.caption)} <code>{_e(fig.file)}</code></figcaption></figure>")


FIGURE_SECTIONS = (("roc", "ROC curves"), ("overlay_roc", "Experiments compared"),
                   ("histogram", "Score distributions"), ("embedding", "Embedding map"),
                   ("training", "Extractor training"))


def build_html(exp: ExperimentData, figures: Sequence[FigureOut], compare: Sequence[ExperimentData] = ()) -> str:
    """The self-contained report page: notes, the official tables, then the figures."""
    cfg = exp.config
    description = f" ({_e(cfg.description)})" if cfg.description else ""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>hybrid_asd report: {_e(exp.label)}</title><style>{CSS}</style></head><body>",
        f"<h1>hybrid_asd report: {_e(exp.label)}</h1>",
        f"<p>Experiment <code>{_e(exp.root)}</code>; approach <b>{_e(cfg.name)}</b>"
        f"{description}; machine type {_e(cfg.data.machine or '-')}; seed {_e(cfg.seed)}; protocol "
        f"{_e(exp.protocol)}, pAUC max FPR {_e(exp.max_fpr)}.</p>",
    ]
    if exp.notes:
        items = "".join(f'<li class="{_e(n.kind)}">{_e(n.text)}</li>' for n in exp.notes)
        parts.append(f'<div class="notes"><b>Notes</b><ul>{items}</ul></div>')
    parts.append("<h2>Results</h2>")
    if exp.evaluated:
        parts.append(f"<p>AUC and pAUC of the labelled test clips, computed as the official evaluator "
                     f"({_e(exp.protocol)}). Precision, recall and F1, where shown, are those of the decisions "
                     f"at the thresholds of the score histograms (gamma fit, "
                     f"{_e(exp.evaluation.threshold_quantile)} quantile), as in the submission's "
                     "<code>decision_result_*</code> files.</p>")
        parts.append(summary_table(exp))
        for det in exp.evaluated:
            parts.append(f"<h3>{_e(det.detector)}</h3>")
            parts.append(results_table(det))
    else:
        parts.append("<p>No evaluated score tables (see the notes above).</p>")
    if exp.clips:
        parts.append("<h2>Clips</h2>")
        parts.append(clip_count_table(exp))
    for kind, heading in FIGURE_SECTIONS:
        chosen = [f for f in figures if f.kind == kind]
        if not chosen:
            continue
        parts.append(f"<h2>{_e(heading)}</h2>")
        if kind == "overlay_roc":
            parts.append(f"<p>This report is <b>{_e(exp.label)}</b>. The numbers of the legends below:</p>")
            parts.append(overlay_table(compare))
        parts.extend(_figure_html(f) for f in chosen)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


