"""The figures of an experiment report: ROC curves (per experiment and overlaid across experiments),
score histograms with decision thresholds, the embedding map and the extractor's training curve.
Rendering itself is in :mod:`hybrid_asd.evaluation.plots`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import roc_curve

from hybrid_asd.data.clips import Clip
from hybrid_asd.ensemble.fusion import FUSED_NAME
from hybrid_asd.errors import ConfigError
from hybrid_asd.evaluation.metrics import DOMAIN_ORDER, Key, LabelledScores
from hybrid_asd.evaluation.plots import (
    HistPanel, RocCurve, embedding_figure, group_color, histogram_figure, png_bytes, roc_figure, series_color,
    training_curve_figure,
)
from hybrid_asd.evaluation.report_data import DetectorEval, ExperimentData, format_metric
from hybrid_asd.evaluation.settings import EMBEDDING_METHODS, SECTION_PAUC_PROTOCOLS

# Most clips drawn in the embedding map (a seeded random subset beyond); t-SNE is O(n log n) and slow.
MAX_MAP_POINTS = {"pca": 20000, "tsne": 4000, "umap": 20000}


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
    return "pAUC (section)" if protocol in SECTION_PAUC_PROTOCOLS else "pAUC"


def _roc_points(groups: dict[Key, LabelledScores], key: Key, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve of the clips the AUC of ``key`` is computed on under ``protocol``."""
    machine, section, domain = key
    if protocol in SECTION_PAUC_PROTOCOLS:  # normals of this domain against the anomalies of both (metrics._rows_2022)
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
    if protocol in SECTION_PAUC_PROTOCOLS:
        text += (f" Protocol {protocol}: a domain's curve and AUC use its normal clips against the anomalous "
                 "clips of both domains; the pAUC is computed once over the whole section.")
    return text


def roc_figures(exp: ExperimentData) -> list[FigureOut]:
    """One ROC figure per (machine, section), every evaluated detector of ``exp`` overlaid."""

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
    fused = [d for d in exp.evaluated if d.detector == FUSED_NAME]
    return fused or exp.evaluated


def overlay_figures(exp: ExperimentData, compare: Sequence[ExperimentData]) -> list[FigureOut]:
    """ROC figures per (machine, section) present in at least two of ``compare``, all overlaid."""

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

    quantile = exp.evaluation.threshold_quantile
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
        pca = PCA(n_components=2, random_state=seed)
        xy = pca.fit_transform(x)
        ratio = pca.explained_variance_ratio_
        return xy, (f"PC1 ({ratio[0]:.0%} of variance)", f"PC2 ({ratio[1]:.0%} of variance)")
    if method == "tsne":
        perplexity = float(min(30.0, (len(x) - 1) / 3.0))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        return xy, ("t-SNE 1", "t-SNE 2")
    if method == "umap":
        import umap  # lazy: an optional dependency (_map_method checks it is installed)

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x), ("UMAP 1", "UMAP 2")
    raise ConfigError(f"unknown embedding map method {method!r}; known: {', '.join(EMBEDDING_METHODS)}")


def _map_method(exp: ExperimentData, method: str, n: int) -> str:
    if method == "umap":
        try:
            import umap  # noqa: F401  # lazy: an optional dependency; only probing whether it is installed
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

    if exp.embeddings is None:
        return []
    clips, emb = exp.embeddings
    if emb.shape[1] < 2 or len(clips) < 3:
        exp.note("problem", f"embeddings of shape {emb.shape}: too few to map in 2-D")
        return []
    seed = exp.config.seed
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

    if exp.train_log is None:
        return []
    title = "extractor training"
    fig = training_curve_figure(exp.train_log, title)
    has_val = bool(np.isfinite(exp.train_log["val_loss"]).any())
    caption = (f"Loss and accuracy of the extractor's section classifier over {len(exp.train_log['epoch'])} "
               f"epoch(s), on its training patches (solid){' and validation clips (dashed)' if has_val else ''}.")
    return [FigureOut("training_curve.png", "training", title, caption, png_bytes(fig))]


