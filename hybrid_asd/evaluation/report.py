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
"""

from __future__ import annotations

import base64
import csv
import html
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import roc_curve

from hybrid_asd.data.clips import Clip, read_clip_list
from hybrid_asd.errors import ConfigError, HybridASDError, ScoreError, StageError
from hybrid_asd.evaluation.defaults import EVALUATION_DEFAULTS
from hybrid_asd.evaluation.metrics import (
    DOMAIN_ORDER,
    Key,
    LabelledScores,
    Results,
    evaluate_scores,
    groups_from_table,
)
from hybrid_asd.evaluation.thresholds import decisions_from_thresholds, section_thresholds
from hybrid_asd.experiment import Experiment
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

REPORT_DIR = "report"
FUSED_ID = "fused"
EMBEDDING_METHODS = ("pca", "tsne", "umap")
# Most clips drawn in the embedding map (a seeded random subset beyond); t-SNE is O(n log n) and slow.
MAX_MAP_POINTS = {"pca": 20000, "tsne": 4000, "umap": 20000}
TRAIN_LOG_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")


def format_metric(value: float | None) -> str:
    """How every AUC/pAUC is printed, in tables and legends alike."""
    return "-" if value is None else f"{value:.4f}"


# --- loaded experiment --------------------------------------------------------------------------
@dataclass(frozen=True)
class Note:
    """A remark shown at the top of the report. ``kind``: missing (a stage has not run),
    problem (a file could not be used) or info."""

    kind: str
    text: str


@dataclass
class DetectorEval:
    """One score table with its evaluation; ``results`` is None when it cannot be evaluated."""

    detector: str
    table: ScoreTable
    results: Results | None = None
    groups: dict[Key, LabelledScores] = field(default_factory=dict)  # labelled test clips (ROC input)
    thresholds: dict[Key, float] | None = None


@dataclass
class ExperimentData:
    """Everything a report shows about one experiment folder."""

    root: Path
    label: str
    config: dict[str, Any]
    evaluation: dict[str, Any]
    detector_filter: list[str] | None = None
    clips: list[Clip] | None = None
    detectors: dict[str, DetectorEval] = field(default_factory=dict)
    embeddings: tuple[list[Clip], np.ndarray] | None = None
    train_log: dict[str, np.ndarray] | None = None
    notes: list[Note] = field(default_factory=list)

    @property
    def protocol(self) -> str:
        return str(self.evaluation["protocol"])

    @property
    def max_fpr(self) -> float:
        return float(self.evaluation["max_fpr"])

    @property
    def evaluated(self) -> list[DetectorEval]:
        return [d for d in self.detectors.values() if d.results is not None]

    def note(self, kind: str, text: str) -> None:
        (log.info if kind == "info" else log.warning)("%s: %s", self.root, text)
        self.notes.append(Note(kind, text))


def load_experiment(root: str | Path, *, detectors: Sequence[str] | None = None,
                    label: str | None = None) -> ExperimentData:
    """Read and evaluate what the stages wrote into ``root``; missing parts become notes.

    ``detectors`` restricts the report to these detector ids (``fused`` for the fused table).
    Raises :class:`StageError` only when the folder or its ``config.yaml`` is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise StageError(f"experiment folder not found: {root}")
    config = Experiment(root).load_config()
    if not isinstance(config, dict):
        raise StageError(f"{root / 'config.yaml'}: not a config mapping")
    evaluation = {**EVALUATION_DEFAULTS, **(config.get("evaluation") or {})}
    data = ExperimentData(root, label or root.name or str(root), config, evaluation,
                          list(detectors) if detectors else None)
    _load_manifest(data)
    _load_detectors(data)
    _load_embeddings(data)
    _load_train_log(data)
    return data


def _load_manifest(data: ExperimentData) -> None:
    train, test = data.root / "manifest" / "train.csv", data.root / "manifest" / "test.csv"
    if not train.is_file():
        data.note("missing", "no clip lists (manifest/train.csv): run the 'prepare' stage")
        return
    try:
        data.clips = read_clip_list(train) + (read_clip_list(test) if test.is_file() else [])
    except (KeyError, ValueError) as exc:
        data.note("problem", f"clip lists under manifest/ could not be read ({exc!r}): rerun the 'prepare' stage")


def _score_table_paths(data: ExperimentData) -> dict[str, Path]:
    scores_dir = data.root / "scores"
    paths = {p.stem: p for p in sorted(scores_dir.glob("*.csv"))} if scores_dir.is_dir() else {}
    fused = data.root / "fused" / "fused.csv"
    if fused.is_file():
        paths[FUSED_ID] = fused
    return paths


def _load_detectors(data: ExperimentData) -> None:
    paths = _score_table_paths(data)
    if not paths:
        data.note("missing", "no score tables (scores/*.csv): run the 'score' stage (inlier detectors) "
                             "or 'extract' (OE scores, scores/oe.csv)")
        return
    if data.detector_filter:
        absent = [d for d in data.detector_filter if d not in paths]
        if absent:
            data.note("problem", f"requested detector(s) {', '.join(absent)} have no score table "
                                 f"(found: {', '.join(paths)})")
        paths = {d: paths[d] for d in data.detector_filter if d in paths}
    elif FUSED_ID not in paths and len(paths) > 1:
        data.note("missing", "no fused scores (fused/fused.csv): run the 'fuse' stage to combine the detectors")
    for detector, path in paths.items():
        try:
            table = ScoreTable.from_csv(path, detector)
        except HybridASDError as exc:
            data.note("problem", f"score table of {detector!r} could not be read: {exc}")
            continue
        data.detectors[detector] = _evaluate_detector(data, table)
    _check_eval_tables(data)


def _evaluate_detector(data: ExperimentData, table: ScoreTable) -> DetectorEval:
    det = DetectorEval(table.detector, table)
    try:
        det.thresholds = section_thresholds(table, float(data.evaluation["threshold_quantile"]))
    except ScoreError as exc:
        data.note("info", f"detector {table.detector!r}: no decision thresholds ({exc})")
    decisions = None
    if det.thresholds is not None:
        try:
            decisions = decisions_from_thresholds(table, det.thresholds)
        except ScoreError as exc:
            data.note("info", f"detector {table.detector!r}: no decisions, so no precision/recall/F1 ({exc})")
    if not any(c.split == "test" and c.label in ("normal", "anomaly") for c in table.clips):
        data.note("info", f"detector {table.detector!r}: no labelled test clips (no ground truth): "
                          "no AUC table or ROC curves")
        return det
    try:
        det.groups = groups_from_table(table)
        det.results = evaluate_scores(table, data.protocol, data.max_fpr, decisions)
    except ScoreError as exc:
        data.note("problem", f"detector {table.detector!r} cannot be evaluated: {exc}")
    return det


def _official_score_in_csv(path: Path) -> float | None:
    with open(path, newline="") as fh:
        for row in csv.reader(fh):
            if len(row) >= 3 and row[0] == "official score":
                return float(row[2])
    return None


def _check_eval_tables(data: ExperimentData) -> None:
    """Compare the 'evaluate' stage's tables (eval/result_<id>.csv) with the score tables."""
    found = False
    for det in data.evaluated:
        path = data.root / "eval" / f"result_{det.detector}.csv"
        if not path.is_file():
            continue
        found = True
        try:
            written = _official_score_in_csv(path)
        except (OSError, ValueError) as exc:
            data.note("problem", f"{path.relative_to(data.root)} could not be read: {exc}")
            continue
        computed = det.results.official_score  # type: ignore[union-attr]
        if written is None or not math.isclose(written, computed, rel_tol=1e-9, abs_tol=1e-12):
            shown = "no official score" if written is None else f"official score {format_metric(written)}"
            data.note("problem", f"{path.relative_to(data.root)} holds {shown} but scores give "
                                 f"{format_metric(computed)}: it is stale, rerun the 'evaluate' stage")
    if data.evaluated and not found:
        data.note("missing", "no eval/result_<id>.csv tables: the 'evaluate' stage has not run "
                             "(the tables below are computed from the score tables)")


def _load_embeddings(data: ExperimentData) -> None:
    clips_csv, npy = data.root / "embeddings" / "clips.csv", data.root / "embeddings" / "embeddings.npy"
    if not (clips_csv.is_file() and npy.is_file()):
        if data.config.get("extractor") is None:
            data.note("info", "no embeddings: the config has no extractor, so there is no embedding map")
        else:
            data.note("missing", "no embeddings (embeddings/clips.csv, embeddings.npy): run the 'extract' stage")
        return
    try:
        clips = read_clip_list(clips_csv)
        emb = np.load(npy, allow_pickle=False)
    except (OSError, KeyError, ValueError) as exc:
        data.note("problem", f"embeddings could not be read ({exc!r}): rerun the 'extract' stage")
        return
    if emb.ndim != 2 or len(emb) != len(clips) or not len(clips):
        data.note("problem", f"embeddings/embeddings.npy has shape {emb.shape} for {len(clips)} clips in "
                             "embeddings/clips.csv: rerun the 'extract' stage")
        return
    data.embeddings = (clips, emb)


def _load_train_log(data: ExperimentData) -> None:
    path = data.root / "extractor" / "train_log.csv"
    if not path.is_file():
        if data.config.get("extractor") is None:
            data.note("info", "no training curve: the config has no extractor")
        else:
            data.note("missing", "no extractor training log (extractor/train_log.csv): run the 'train' stage")
        return
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "epoch" not in rows[0]:
        data.note("problem", "extractor/train_log.csv holds no epochs: rerun the 'train' stage")
        return
    try:
        data.train_log = {col: np.array([_as_float(r.get(col)) for r in rows]) for col in TRAIN_LOG_COLUMNS}
    except ValueError as exc:
        data.note("problem", f"extractor/train_log.csv: {exc}")


def _as_float(text: str | None) -> float:
    return float("nan") if text in (None, "") else float(text)


# --- figures ------------------------------------------------------------------------------------
@dataclass
class FigureOut:
    """A rendered figure. ``legend`` holds the numbers behind ROC legends, ``legend_texts`` the
    legend exactly as drawn."""

    file: str
    kind: str
    title: str
    caption: str
    png: bytes
    legend: list[dict[str, Any]] = field(default_factory=list)
    legend_texts: list[str] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        return {"file": self.file, "kind": self.kind, "title": self.title, "caption": self.caption,
                "bytes": len(self.png), "legend": self.legend, "legend_texts": self.legend_texts}


def _safe(name: str) -> str:
    """A file-name-safe form of a machine or detector name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _pauc_name(protocol: str) -> str:
    return "pAUC (section)" if protocol == "dcase2022" else "pAUC"


def _roc_points(groups: dict[Key, LabelledScores], key: Key, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve of the clips the AUC of ``key`` is computed on under ``protocol``."""
    machine, section, domain = key
    if protocol == "dcase2022":  # normals of this domain against the anomalies of both (metrics._rows_2022)
        parts = [(d, groups[(machine, section, d)]) for d in DOMAIN_ORDER if (machine, section, d) in groups]
        labels = np.concatenate([g.labels for _, g in parts])
        scores = np.concatenate([g.scores for _, g in parts])
        domains = np.concatenate([np.full(len(g.labels), d) for d, g in parts])
        mask = (domains == domain) | (labels != 0)
        labels, scores = labels[mask], scores[mask]
    else:
        labels, scores = groups[key].labels, groups[key].scores
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr


def _roc_series(exp: ExperimentData, det: DetectorEval, section: tuple[str, int], color: str,
                prefix: str) -> tuple[list[Any], list[dict[str, Any]]]:
    from hybrid_asd.evaluation.plots import RocCurve

    curves, entries = [], []
    for row in det.results.rows:  # type: ignore[union-attr]
        if (row.machine, row.section) != section:
            continue
        fpr, tpr = _roc_points(det.groups, (row.machine, row.section, row.domain), exp.protocol)
        label = (f"{prefix}{row.domain}: AUC {format_metric(row.auc)}, "
                 f"{_pauc_name(exp.protocol)} {format_metric(row.pauc)}")
        curves.append(RocCurve(label, fpr, tpr, color, "-" if row.domain == "source" else "--"))
        entries.append({"experiment": exp.label, "detector": det.detector, "machine": row.machine,
                        "section": row.section, "domain": row.domain, "auc": row.auc, "pauc": row.pauc,
                        "label": label})
    return curves, entries


def _roc_caption(protocol: str, max_fpr: float, what: str) -> str:
    text = (f"ROC curves of {what}: source-domain test clips solid, target-domain dashed. Shaded: the pAUC "
            f"region (FPR \u2264 {max_fpr:g}). Legend numbers are those of the results table.")
    if protocol == "dcase2022":
        text += (" Protocol dcase2022: a domain's curve and AUC use its normal clips against the anomalous "
                 "clips of both domains; the pAUC is computed once over the whole section.")
    return text


def roc_figures(exp: ExperimentData) -> list[FigureOut]:
    """One ROC figure per (machine, section), every evaluated detector of ``exp`` overlaid."""
    from hybrid_asd.evaluation.plots import png_bytes, roc_figure, series_color

    evaluated = exp.evaluated
    sections = sorted({(r.machine, r.section) for d in evaluated for r in d.results.rows})  # type: ignore[union-attr]
    out = []
    for machine, section in sections:
        curves, entries = [], []
        for i, det in enumerate(evaluated):
            c, e = _roc_series(exp, det, (machine, section), series_color(i), f"{det.detector} ")
            curves += c
            entries += e
        title = f"{machine} section {section:02d}"
        fig, texts = roc_figure(curves, title, exp.max_fpr)
        out.append(FigureOut(f"roc_{_safe(machine)}_section_{section:02d}.png", "roc", title,
                             _roc_caption(exp.protocol, exp.max_fpr, f"{machine} section {section:02d}, "
                                          "one colour per detector"), png_bytes(fig), entries, texts))
    return out


def overlay_detectors(exp: ExperimentData) -> list[DetectorEval]:
    """Detectors of ``exp`` drawn in cross-experiment overlays: those requested, else the fused
    table where there is one, else all."""
    if exp.detector_filter:
        return exp.evaluated
    fused = [d for d in exp.evaluated if d.detector == FUSED_ID]
    return fused or exp.evaluated


def overlay_figures(exp: ExperimentData, compare: Sequence[ExperimentData]) -> list[FigureOut]:
    """ROC figures per (machine, section) present in at least two of ``compare``, all overlaid."""
    from hybrid_asd.evaluation.plots import png_bytes, roc_figure, series_color

    series = [(other, det) for other in compare for det in overlay_detectors(other)]
    owners: dict[tuple[str, int], set[str]] = {}
    for other, det in series:
        for row in det.results.rows:  # type: ignore[union-attr]
            owners.setdefault((row.machine, row.section), set()).add(str(other.root))
    if len({o.protocol for o in compare}) > 1 or len({o.max_fpr for o in compare}) > 1:
        exp.note("info", "the compared experiments use different protocols or max_fpr: each curve's numbers "
                         "follow its own experiment's evaluation settings")
    out = []
    for machine, section in sorted(k for k, v in owners.items() if len(v) > 1):
        curves, entries = [], []
        for i, (other, det) in enumerate(series):
            c, e = _roc_series(other, det, (machine, section), series_color(i), f"{other.label} / {det.detector} ")
            curves += c
            entries += e
        title = f"{machine} section {section:02d}: experiments compared"
        fig, texts = roc_figure(curves, title, exp.max_fpr)
        out.append(FigureOut(f"overlay_roc_{_safe(machine)}_section_{section:02d}.png", "overlay_roc", title,
                             _roc_caption(exp.protocol, exp.max_fpr, f"{machine} section {section:02d}, one colour "
                                          "per experiment and detector"), png_bytes(fig), entries, texts))
    return out


def histogram_figures(exp: ExperimentData) -> list[FigureOut]:
    """Per detector: test-clip score histograms per section and domain with the decision threshold."""
    from hybrid_asd.evaluation.plots import HistPanel, histogram_figure, png_bytes

    quantile = float(exp.evaluation["threshold_quantile"])
    out = []
    for det in exp.detectors.values():
        test = det.table.select(split="test")
        sections = sorted({(c.machine, c.section) for c in test.clips})
        if not sections:
            exp.note("info", f"detector {det.detector!r}: no test clips, so no score histogram")
            continue
        labels = np.array([c.label for c in test.clips])
        keys = [(c.machine, c.section, c.domain) for c in test.clips]
        panels = []
        for machine, section in sections:
            for domain in DOMAIN_ORDER:
                mask = np.array([k == (machine, section, domain) for k in keys])
                threshold = None if det.thresholds is None else det.thresholds.get((machine, section, domain))
                panels.append(HistPanel(f"{machine} section {section:02d} {domain}",
                                        test.scores[mask & (labels == "normal")],
                                        test.scores[mask & (labels == "anomaly")],
                                        test.scores[mask & (labels == "unknown")], threshold))
        title = f"test-clip anomaly scores: {det.detector}"
        fig = histogram_figure(panels, n_cols=len(DOMAIN_ORDER), title=title)
        threshold_text = (f"dashed line: the decision threshold (gamma fit to the normal training clips' scores, "
                          f"{quantile:g} quantile)" if det.thresholds is not None
                          else "no decision threshold (no training-clip scores)")
        out.append(FigureOut(f"scores_{_safe(det.detector)}.png", "histogram", title,
                             f"Anomaly scores of detector {det.detector} on the test clips, normal and anomalous, "
                             f"per section and domain; {threshold_text}.", png_bytes(fig)))
    return out


def project_2d(x: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, tuple[str, str]]:
    """2-D coordinates of the rows of ``x`` and the axis labels: PCA, t-SNE or UMAP."""
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed)
        xy = pca.fit_transform(x)
        ratio = pca.explained_variance_ratio_
        return xy, (f"PC1 ({ratio[0]:.0%} of variance)", f"PC2 ({ratio[1]:.0%} of variance)")
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (len(x) - 1) / 3.0))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        return xy, ("t-SNE 1", "t-SNE 2")
    if method == "umap":
        import umap  # optional dependency; callers check it is importable

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x), ("UMAP 1", "UMAP 2")
    raise ConfigError(f"unknown embedding map method {method!r}; known: {', '.join(EMBEDDING_METHODS)}")


def _map_method(exp: ExperimentData, method: str, n: int) -> str:
    if method == "umap":
        try:
            import umap  # noqa: F401
        except ImportError:
            exp.note("info", "UMAP requested but the 'umap' package is not installed: the map uses PCA")
            return "pca"
    if method == "tsne" and n < 8:
        exp.note("info", f"only {n} embeddings: too few for t-SNE, the map uses PCA")
        return "pca"
    return method


def _clip_kind(clip: Clip) -> str:
    if clip.split == "train":
        return "train"
    return {"anomaly": "test anomaly", "normal": "test normal"}.get(clip.label, "test unlabelled")


def embedding_figures(exp: ExperimentData, method: str = "pca") -> list[FigureOut]:
    """The 2-D map of the clip embeddings, coloured by section and domain, anomalies marked."""
    from hybrid_asd.evaluation.plots import embedding_figure, group_color, png_bytes

    if exp.embeddings is None:
        return []
    clips, emb = exp.embeddings
    if emb.shape[1] < 2 or len(clips) < 3:
        exp.note("problem", f"embeddings of shape {emb.shape}: too few to map in 2-D")
        return []
    seed = int(exp.config.get("seed", 0) or 0)
    method = _map_method(exp, method, len(clips))
    index = np.arange(len(clips))
    if len(clips) > MAX_MAP_POINTS[method]:
        index = np.sort(np.random.default_rng(seed).choice(len(clips), MAX_MAP_POINTS[method], replace=False))
        exp.note("info", f"embedding map: a random {len(index)} of the {len(clips)} clips are drawn")
    shown = [clips[i] for i in index]
    xy, axis_labels = project_2d(np.asarray(emb[index], dtype=np.float64), method, seed)
    multi = len({c.machine for c in shown}) > 1
    sections = sorted({(c.machine, c.section) for c in shown})

    def group(clip: Clip) -> str:
        return f"{clip.machine + ' ' if multi else ''}{clip.section:02d} {clip.domain}"

    present = {group(c) for c in shown}
    colors = {}
    for i, (machine, section) in enumerate(sections):
        for domain in DOMAIN_ORDER:
            name = f"{machine + ' ' if multi else ''}{section:02d} {domain}"
            if name in present:
                colors[name] = group_color(i, domain)
    for name in sorted(present - set(colors)):  # domains other than source/target, if any
        colors[name] = "0.4"
    kinds = [_clip_kind(c) for c in shown]
    name = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}[method]
    title = f"clip embeddings ({name})"
    fig = embedding_figure(xy, [group(c) for c in shown], kinds, colors, title, axis_labels)
    n_test = sum(k != "train" for k in kinds)
    caption = (f"{name} map of {len(shown)} clip embeddings ({len(shown) - n_test} training, {n_test} test, "
               f"{kinds.count('test anomaly')} of them anomalous). Colour: section, dark for the source domain and "
               "light for the target domain; crosses mark anomalous test clips. Target clips lying away from their "
               "section's source cluster show the domain shift.")
    return [FigureOut(f"embedding_{method}.png", "embedding", title, caption, png_bytes(fig))]


def training_figures(exp: ExperimentData) -> list[FigureOut]:
    """The extractor's loss and accuracy per epoch."""
    from hybrid_asd.evaluation.plots import png_bytes, training_curve_figure

    if exp.train_log is None:
        return []
    title = "extractor training"
    fig = training_curve_figure(exp.train_log, title)
    has_val = bool(np.isfinite(exp.train_log["val_loss"]).any())
    caption = (f"Loss and accuracy of the extractor's section classifier over {len(exp.train_log['epoch'])} "
               f"epoch(s), on its training patches (solid){' and validation clips (dashed)' if has_val else ''}.")
    return [FigureOut("training_curve.png", "training", title, caption, png_bytes(fig))]


# --- HTML ---------------------------------------------------------------------------------------
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
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>hybrid_asd report: {_e(exp.label)}</title><style>{CSS}</style></head><body>",
        f"<h1>hybrid_asd report: {_e(exp.label)}</h1>",
        f"<p>Experiment <code>{_e(exp.root)}</code>; approach <b>{_e(cfg.get('name', ''))}</b>"
        f"{' (' + _e(cfg['description']) + ')' if cfg.get('description') else ''}; machine type "
        f"{_e((cfg.get('data') or {}).get('machine') or '-')}; seed {_e(cfg.get('seed', '-'))}; protocol "
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
                     f"{_e(exp.evaluation['threshold_quantile'])} quantile), as in the submission's "
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


# --- writing ------------------------------------------------------------------------------------
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
    import json

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
    out_dir = exp.root / REPORT_DIR
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
    "DetectorEval", "ExperimentData", "FigureOut", "Note", "Report", "build_html", "build_report",
    "format_metric", "load_experiment", "write_report", "write_reports",
]
