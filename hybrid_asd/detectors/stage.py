"""Detector stage: fit inlier models per section (and domain) and score clips.

Reads the experiment's manifest and, depending on each detector entry's ``input``, its
embeddings (serial hybrid) or log-mel features from the cache (parallel hybrid, AE baseline).
Domain handling is done by ``DomainAdaptiveDetector`` (one place for all detectors); this module
only loops over sections, aggregates row scores to clip scores (mean) and writes files.

Outputs per detector id (paths from :class:`~hybrid_asd.experiment.Experiment`)::

    detectors/<id>/section_<nn>/      fitted detector (or detectors/<id>/all/ when per_section is false)
    detectors/<id>/train_scores.csv   out-of-fold scores of the normal training clips
    scores/<id>.csv                   train (out-of-fold) + test rows: the score table
    submission/<id>/                  official anomaly_score_* / decision_result_* files (the ``score``
                                      stage writes them for every score table, OE scores included)
"""

from __future__ import annotations

import inspect
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from hybrid_asd.config import OE_SCORES, Config
from hybrid_asd.data.clips import Clip, read_clip_list, write_clip_list
from hybrid_asd.data.names import SUPPLEMENTAL, parse_clip_path
from hybrid_asd.detectors.adapt import DomainAdaptiveDetector, cross_fit_scores
from hybrid_asd.detectors.registry import DETECTORS
from hybrid_asd.detectors.settings import DetectorEntry
from hybrid_asd.errors import DataError, HybridASDError, StageError
from hybrid_asd.ensemble.members import discover_references
from hybrid_asd.evaluation.submission import write_submission_of
from hybrid_asd.experiment import Experiment
from hybrid_asd.pipeline import run_stage
from hybrid_asd.extractor.embed import extract
from hybrid_asd.features.cache import FeatureCache, file_sha256
from hybrid_asd.features.patches import channel_stack_frames, channel_statistics
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_save_npy, load_npy

log = logging.getLogger(__name__)


@dataclass
class Rows:
    """Detector input rows and, for each row, the index of the clip it belongs to."""

    X: np.ndarray
    clip_index: np.ndarray

    def for_clips(self, clip_ids: np.ndarray) -> "Rows":
        mask = np.isin(self.clip_index, clip_ids)
        if mask.all():  # one model for all clips: no copy (frame matrices reach gigabytes)
            return self
        return Rows(self.X[mask], self.clip_index[mask])


# --- inputs ---------------------------------------------------------------------------------
def build_rows(kind: str, clips: list[Clip], exp: Experiment, config: Config, progress: bool = True) -> Rows:
    """Detector input rows for ``clips`` (one row per clip, or per frame for ``logmel_frames``);
    ``kind`` is one of :data:`~hybrid_asd.detectors.settings.INPUT_KINDS`."""
    if kind == "embedding":
        return Rows(load_embeddings(exp, clips), np.arange(len(clips)))
    logmels = FeatureCache(config.features, config.data).get_many([c.path for c in clips], progress=progress)
    return feature_rows(kind, logmels, config.features.stack_frames)


def feature_rows(kind: str, logmels: list[np.ndarray], stack: int) -> Rows:
    """Rows of a log-mel input kind (``logmel_stats`` or ``logmel_frames`` with ``stack`` frames)
    from the clips' log-mels (``hybrid_asd.monitor`` passes log-mels of new recordings here). Log-mels
    of several channels (``data.channel: all``) give each channel's statistics or frames, concatenated."""
    if kind == "logmel_stats":
        return Rows(np.stack([channel_statistics(m) for m in logmels]).astype(np.float32), np.arange(len(logmels)))
    return stacked_frame_rows(logmels, stack)


def stacked_frame_rows(logmels: list[np.ndarray], n_frames: int) -> Rows:
    """Frame-stacked rows of all clips in one preallocated float32 matrix.

    Filled clip by clip rather than concatenated: at DCASE size (6,000 clips x 309 rows x 640
    values, 4.8 GB) a list of blocks plus their concatenation would need twice the memory."""
    counts = [max(int(m.shape[-1]) - n_frames + 1, 0) for m in logmels]
    width = n_frames * (int(np.prod(logmels[0].shape[:-1])) if logmels else 0)  # channels x n_mels
    X = np.empty((sum(counts), width), dtype=np.float32)
    start = 0
    for logmel, count in zip(logmels, counts):
        X[start : start + count] = channel_stack_frames(logmel, n_frames)
        start += count
    return Rows(X, np.repeat(np.arange(len(logmels)), counts))


def load_embeddings(exp: Experiment, clips: list[Clip]) -> np.ndarray:
    """Embeddings of ``clips`` (by path) from the extract stage's output."""
    clips_csv = exp.require(exp.embedding_clips_path, "extract")
    table = read_clip_list(clips_csv)
    emb = load_npy(exp.require(exp.embeddings_path, "extract"), "rerun the 'extract' stage")
    if len(table) != len(emb):
        raise StageError(f"{clips_csv}: {len(table)} clips but {len(emb)} embeddings; rerun 'extract'")
    row_of = {str(c.path): i for i, c in enumerate(table)}
    if emb.ndim != 2:
        raise StageError(f"{exp.embeddings_path}: holds an array of shape {emb.shape}, not embeddings; rerun 'extract'")
    missing = [str(c.path) for c in clips if str(c.path) not in row_of]
    if missing:
        raise StageError(f"no embedding for {len(missing)} clip(s), e.g. {missing[0]}; rerun 'extract'")
    return emb[[row_of[str(c.path)] for c in clips]]


def clip_scores(row_scores: np.ndarray, clip_index: np.ndarray, n_clips: int) -> np.ndarray:
    """Mean of row scores per clip (frame-level detectors give many rows per clip)."""
    sums = np.bincount(clip_index, weights=row_scores, minlength=n_clips)
    counts = np.bincount(clip_index, minlength=n_clips)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


# --- fitting --------------------------------------------------------------------------------
def model_groups(entry: DetectorEntry, clips: list[Clip]) -> dict[str, np.ndarray]:
    """Clip indices per fitted model: one per section, or one for all sections."""
    if entry.per_section:
        sections = sorted({c.section for c in clips})
        return {f"section_{s:02d}": np.array([i for i, c in enumerate(clips) if c.section == s]) for s in sections}
    return {"all": np.arange(len(clips))}


def detector_conf(entry: DetectorEntry, device: str, seed: int) -> dict[str, Any]:
    """The entry's conf, with device and seed passed on where the detector takes them."""
    conf = dict(entry.conf)
    params = inspect.signature(DETECTORS.get(entry.name)).parameters
    if "device" in params and "device" not in conf:
        conf["device"] = device
    if "seed" in params and "seed" not in conf:
        conf["seed"] = seed
    return conf


def make_adaptive(entry: DetectorEntry, device: str, seed: int) -> DomainAdaptiveDetector:
    conf = detector_conf(entry, device, seed)
    return DomainAdaptiveDetector(entry.name, conf, seed=seed, standardise=entry.standardise_input,
                                  **entry.adaptation.to_dict())


def section_condition(entry: DetectorEntry, sections: np.ndarray, rows: Rows) -> np.ndarray | None:
    """Per-row section ids for one model of all sections (a conditional model); None per section."""
    return None if entry.per_section else sections[rows.clip_index]


def fit_one_detector(
    entry: DetectorEntry,
    train: list[Clip],
    rows: Rows,
    exp: Experiment,
    *,
    device: str,
    seed: int,
    only_groups: set[str] | None = None,
) -> np.ndarray:
    """Fit ``entry`` per model group on ``rows`` and save the models into ``exp`` (all groups, or
    ``only_groups``); return out-of-fold scores of the training clips (NaN outside the groups)."""
    domains_all = np.array([c.domain for c in train])
    sections_all = np.array([c.section for c in train])
    oof = np.full(len(train), np.nan)
    for group, clip_ids in model_groups(entry, train).items():
        if only_groups is not None and group not in only_groups:
            continue
        sub = rows.for_clips(clip_ids)
        row_domains = domains_all[sub.clip_index]
        condition = section_condition(entry, sections_all, sub)
        detector = make_adaptive(entry, device, seed).fit(
            sub.X, row_domains, condition=condition, groups=sub.clip_index
        )
        detector.save(exp.detector_model_dir(entry.id, group))
        adaptation = entry.adaptation
        if entry.cross_fit_splits >= 2:
            row_scores = cross_fit_scores(
                entry.name, detector_conf(entry, device, seed), sub.X, row_domains,
                groups=sub.clip_index, n_splits=entry.cross_fit_splits, seed=seed, condition=condition,
                inner_splits=adaptation.n_splits, mode=adaptation.mode, smote=adaptation.smote,
                normalise=adaptation.normalise, standardise=entry.standardise_input,
            )
        else:
            log.warning("%s: cross_fit_splits < 2, train-clip scores are in-sample (biased low)", entry.id)
            row_scores = detector.decision_function(sub.X, condition=condition)
        per_clip = clip_scores(row_scores, sub.clip_index, len(train))
        oof[clip_ids] = per_clip[clip_ids]
    return oof


def run_fit(exp: Experiment, config: Config, *, device: str, progress: bool = True) -> None:
    """Fit every detector of the config on the experiment's training clips."""
    train = exp.train_clips()
    if not config.detectors:
        log.info("config has no detectors: nothing to fit")
        return
    cache: dict[str, Rows] = {}  # detectors sharing an input share its rows
    for entry in tqdm(config.detectors, desc="fit detectors", disable=not progress):
        if entry.input not in cache:
            cache[entry.input] = build_rows(entry.input, train, exp, config, progress=progress)
        log.info("fitting %s (%s on %s)", entry.id, entry.name, entry.input)
        if exp.detector_dir(entry.id).exists():
            shutil.rmtree(exp.detector_dir(entry.id))
        oof = fit_one_detector(entry, train, cache[entry.input], exp, device=device, seed=config.seed)
        ScoreTable(entry.id, train, oof).to_csv(exp.detector_train_scores_path(entry.id))


# --- scoring --------------------------------------------------------------------------------
def load_group_model(exp: Experiment, entry: DetectorEntry, group: str) -> DomainAdaptiveDetector:
    """The fitted detector of one model group (``section_<nn>`` or ``all``) of ``entry``."""
    model_dir = exp.detector_model_dir(entry.id, group)
    if not model_dir.is_dir():
        raise StageError(f"{model_dir} is missing: section has no fitted detector (run the 'fit' stage)")
    return load_fitted(model_dir)


def score_one_detector(entry: DetectorEntry, clips: list[Clip], rows: Rows, exp: Experiment) -> np.ndarray:
    return score_with_models(entry, clips, rows, lambda group: load_group_model(exp, entry, group))[0]


def score_with_models(
    entry: DetectorEntry, clips: list[Clip], rows: Rows, model_of: Callable[[str], DomainAdaptiveDetector]
) -> tuple[np.ndarray, np.ndarray]:
    """Clip scores of ``entry`` with the fitted model of each group (``model_of(group)``), and per
    clip the domain model that gave its score (the one that gave most of its rows' minimum:
    ``"source"``, ``"target"`` or ``"pooled"``, see ``DomainAdaptiveDetector.decision_with_model``)."""
    scores = np.full(len(clips), np.nan)
    models = np.full(len(clips), "", dtype=object)
    sections_all = np.array([c.section for c in clips])
    for group, clip_ids in model_groups(entry, clips).items():
        detector = model_of(group)
        sub = rows.for_clips(clip_ids)
        condition = section_condition(entry, sections_all, sub)
        row_scores, row_models = detector.decision_with_model(sub.X, condition=condition)
        per_clip = clip_scores(row_scores, sub.clip_index, len(clips))
        scores[clip_ids] = per_clip[clip_ids]
        models[clip_ids] = majority_per_clip(row_models, sub.clip_index, len(clips))[clip_ids]
    return scores, models


def majority_per_clip(labels: np.ndarray, clip_index: np.ndarray, n_clips: int) -> np.ndarray:
    """The most frequent row label of each clip ("" for a clip without rows; ties: first in sorted order)."""
    out = np.full(n_clips, "", dtype=object)
    names, codes = np.unique(labels, return_inverse=True)
    if not len(names):
        return out
    counts = np.zeros((n_clips, len(names)), dtype=np.int64)
    np.add.at(counts, (clip_index, codes), 1)
    has_rows = counts.sum(axis=1) > 0
    out[has_rows] = names[counts[has_rows].argmax(axis=1)]
    return out


def load_fitted(model_dir: Path) -> DomainAdaptiveDetector:
    """A fitted detector folder; whatever makes it unreadable (a corrupt ``model.pt``, ``.npy`` array,
    FAISS index or ``params.json``) is a DataError naming the folder and the fix."""
    try:
        return DomainAdaptiveDetector.load(model_dir)
    except HybridASDError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch, numpy and faiss each raise their own types on corrupt files
        raise DataError(f"{model_dir}: the fitted detector cannot be read ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}); refit it: hybrid-asd fit --exp "
                        f"{model_dir.parent.parent.parent} --force") from exc


def run_score(exp: Experiment, config: Config, *, device: str, progress: bool = True) -> None:
    """Score test clips with every fitted detector into score tables, then write the official files
    (with decisions at ``evaluation.threshold_quantile`` of out-of-sample normal scores, see
    :mod:`hybrid_asd.evaluation.thresholds`) of every score table, OE scores included."""
    test = exp.test_clips()
    cache: dict[str, Rows] = {}
    for entry in tqdm(config.detectors, desc="score detectors", disable=not progress):
        exp.require(exp.detector_dir(entry.id), "fit")
        train_scores = ScoreTable.from_csv(exp.require(exp.detector_train_scores_path(entry.id), "fit"), entry.id)
        if entry.input not in cache:
            cache[entry.input] = build_rows(entry.input, test, exp, config, progress=progress)
        test_scores = ScoreTable(entry.id, test, score_one_detector(entry, test, cache[entry.input], exp))
        test_scores.check_finite(str(exp.detector_dir(entry.id)))
        ScoreTable.concat([train_scores, test_scores], entry.id).to_csv(exp.score_table_path(entry.id))
    paths = [exp.require(exp.score_table_path(table_id), "extract") for table_id in config.score_tables]
    # tables computed by the extractor (OE, embedding inputs): thresholds from its held-out clips only
    references = discover_references(paths, list(config.score_tables))
    for table_id, path in zip(config.score_tables, paths):
        write_submission_of(ScoreTable.from_csv(path, table_id), exp.submission_dir(table_id),
                            config.evaluation.threshold_quantile, reference=references.get(table_id),
                            thresholds_path=exp.thresholds_path(table_id))


# --- adaptation to new target-domain clips ----------------------------------------------------
def expand_wav_paths(sources: list[Path]) -> list[Path]:
    """WAV files from files and folders (folders are searched recursively), sorted."""
    out: list[Path] = []
    for src in map(Path, sources):
        if src.is_dir():
            out.extend(sorted(src.rglob("*.wav")))
        elif src.is_file():
            out.append(src)
        else:
            raise StageError(f"not found: {src}")
    if not out:
        raise StageError(f"no WAV files in {[str(s) for s in sources]}")
    return out


def check_new_clip(path: Path, exp: Experiment, machine: str, sections: set[int], test_paths: set[str]) -> Clip:
    """The clip record of one new training clip, or a StageError saying why it cannot be one.

    A new clip must be a normal target-domain *training* clip of this experiment's machine type
    (from its folder, ``<machine>/train/<name>.wav``) and of one of its sections, and must not be a
    test clip (listed in ``manifest/test.csv``, or named as one): adding a test clip to the target
    memory would score it against itself."""
    resolved = path.resolve()
    if str(resolved) in test_paths or str(path) in test_paths:
        raise StageError(f"{path} is a test clip of this experiment ({exp.manifest_path('test')}); "
                         "a test clip cannot become training data")
    clip = parse_clip_path(resolved)
    if clip.machine != machine:
        raise StageError(f"{path}: its folder says machine type {clip.machine!r} (<machine>/<split>/<name>.wav), "
                         f"but this experiment is {machine!r}; put new {machine} clips under {machine}/train/")
    if clip.split == SUPPLEMENTAL:
        raise StageError(f"{path} is a supplemental clip (DCASE 2025+ {SUPPLEMENTAL}/ folder); adapt takes new normal "
                         "target-domain training clips only (supplemental clips join the training clips with "
                         "data.supplemental.use: train, then rerun from 'prepare')")
    if clip.split != "train":
        raise StageError(f"{path} is named as a test clip; adapt takes new normal training clips only")
    if clip.label != "normal":
        raise StageError(f"{path}: adapt takes normal clips only, this one is labelled {clip.label}")
    if clip.domain != "target":
        raise StageError(f"{path} is a {clip.domain}-domain clip; adapt adds target-domain clips (new source "
                         "clips belong in the data root, then rerun from 'prepare')")
    if clip.section not in sections:
        known = ", ".join(f"{s:02d}" for s in sorted(sections))
        raise StageError(f"{path}: section {clip.section:02d} is not a section of this experiment (sections {known}); "
                         "adapt extends the sections the experiment was trained on")
    return clip


def same_content_as_test_clip(new: list[Clip], test: list[Clip]) -> dict[str, str]:
    """{new clip path: test clip path} for new clips whose bytes equal a test clip's (a renamed copy)."""
    sizes = {Path(c.path).stat().st_size for c in new}
    by_hash = {file_sha256(c.path): str(c.path) for c in test
               if Path(c.path).is_file() and Path(c.path).stat().st_size in sizes}
    return {str(c.path): by_hash[h] for c in new if (h := file_sha256(c.path)) in by_hash}


def new_target_clips(sources: list[Path], exp: Experiment, machine: str) -> list[Clip]:
    """The checked new clips (see :func:`check_new_clip`), none a copy of a test clip."""
    test = exp.test_clips()
    test_paths = {str(c.path) for c in test} | {str(Path(c.path).resolve()) for c in test}
    sections = {c.section for c in exp.train_clips()}
    clips = [check_new_clip(path, exp, machine, sections, test_paths) for path in expand_wav_paths(sources)]
    copies = same_content_as_test_clip(clips, test)
    if copies:
        new, old = next(iter(copies.items()))
        raise StageError(f"{new} has the same content as the test clip {old} ({len(copies)} such clip(s)); "
                         "a test clip cannot become training data")
    return clips


def run_adapt(
    exp: Experiment, config: Config, sources: list[Path], *, device: str = "cpu", progress: bool = True
) -> list[Clip]:
    """Add new normal target-domain training clips to a fitted experiment.

    Only what depends on them is redone: their features, embeddings and OE scores, the detectors of
    the sections they belong to (other sections keep their fitted models and scores), scoring, and
    fusion and evaluation where they had been run (so nothing downstream is stale). The extractor is
    not retrained. Nothing is written until every new clip has been read (a corrupt clip changes
    nothing); the clips are kept in ``manifest/adapted.csv``, which ``prepare`` keeps in the training
    list. If an earlier ``adapt`` was interrupted after adding its clips, rerunning it finishes the
    refit.
    """
    if not config.data.machine:
        raise StageError("data.machine is not set in the experiment's config")
    for entry in config.detectors:
        exp.require(exp.detector_train_scores_path(entry.id), "fit")
    train = exp.train_clips()
    known = {str(c.path) for c in train}
    new = [c for c in new_target_clips(sources, exp, config.data.machine) if str(c.path) not in known]
    downstream = [name for name in ("fuse", "evaluate") if exp.stage_done(name, config)]
    if not new:
        if exp.stage_done("fit", config) and exp.stage_done("score", config):
            log.info("no new clips: every given clip is already part of the training set")
            return []
        log.warning("%s: an earlier 'adapt' did not finish; refitting every detector", exp.root)
        # that adapt cleared the markers of fuse and evaluate: rerun them where they have outputs
        had_run = {"fuse": exp.fusion.fused.is_file(), "evaluate": bool(exp.result_paths())}
        finish_adapt(exp, config, [name for name, ran in had_run.items() if ran], device=device, progress=progress)
        return []
    # Read everything first: a corrupt or too-short clip stops here, before anything is written.
    cache = FeatureCache(config.features, config.data)
    cache.get_many([c.path for c in new], progress=progress)
    embedded = None
    if config.extractor is not None:
        checkpoint = exp.require(exp.extractor.checkpoint, "train")
        embedded = extract(checkpoint, new, cache, device=device, progress=progress)
    for stage in ("fit", "score", "fuse", "evaluate"):  # until the refit is done, they are not
        exp.clear_stage(stage)
    if embedded is not None:
        append_embeddings(exp, new, *embedded)
    adapted = [c for c in exp.adapted_clips() if str(c.path) not in {str(n.path) for n in new}]
    write_clip_list(exp.adapted_manifest_path, adapted + new)
    train = train + new
    exp.write_clips("train", train)
    refit_sections(exp, config, train, new, device=device, progress=progress)
    exp.mark_done("fit", config)
    finish_adapt(exp, config, downstream, device=device, progress=progress, refit=False)
    return new


def refit_sections(exp: Experiment, config: Config, train: list[Clip], new: list[Clip], *, device: str,
                   progress: bool) -> None:
    """Refit every detector's models of the sections of ``new`` and merge their out-of-fold scores."""
    groups = {f"section_{s:02d}" for s in {c.section for c in new}}
    cache: dict[str, Rows] = {}
    for entry in config.detectors:
        refit = groups if entry.per_section else {"all"}
        if entry.input not in cache:  # detectors sharing an input share its rows, as in run_fit
            cache[entry.input] = build_rows(entry.input, train, exp, config, progress=progress)
        oof = fit_one_detector(entry, train, cache[entry.input], exp, device=device, seed=config.seed,
                               only_groups=refit)
        train_scores = exp.require(exp.detector_train_scores_path(entry.id), "fit")
        old = ScoreTable.from_csv(train_scores, entry.id)
        old_by_path = dict(zip(old.keys(), old.scores))
        merged = np.array([s if np.isfinite(s) else old_by_path.get(str(c.path), np.nan) for c, s in zip(train, oof)])
        ScoreTable(entry.id, train, merged).to_csv(train_scores)
        log.info("%s: refitted %s with %d new clip(s)", entry.id, ", ".join(sorted(refit)), len(new))


def finish_adapt(exp: Experiment, config: Config, downstream: list[str], *, device: str, progress: bool,
                 refit: bool = True) -> None:
    """Score (after a full refit when ``refit``), then rerun the downstream stages that had been run."""
    if refit:
        run_stage(exp, config, "fit", device=device, progress=progress, force=True)
    run_stage(exp, config, "score", device=device, progress=progress, force=True)
    for name in downstream:
        log.info("rerunning '%s' on the adapted scores", name)
        run_stage(exp, config, name, device=device, progress=progress, force=True)


def append_embeddings(exp: Experiment, clips: list[Clip], emb: np.ndarray, oe: np.ndarray) -> None:
    """Append the embeddings and OE scores of new training clips to the extract stage's outputs."""
    clips_csv = exp.require(exp.embedding_clips_path, "extract")
    old_clips = read_clip_list(clips_csv)
    old_emb = load_npy(exp.require(exp.embeddings_path, "extract"), "rerun the 'extract' stage")
    # rows of an earlier, interrupted adapt of the same clips are replaced, not doubled
    new_paths = {str(c.path) for c in clips}
    keep = [i for i, c in enumerate(old_clips) if str(c.path) not in new_paths]
    # Embeddings first, clip list second: a crash in between leaves a length mismatch that
    # load_embeddings reports, never a silent misalignment.
    atomic_save_npy(exp.embeddings_path, np.concatenate([old_emb[keep], emb]))
    write_clip_list(clips_csv, [old_clips[i] for i in keep] + clips)
    oe_path = exp.require(exp.score_table_path(OE_SCORES), "extract")
    table = ScoreTable.from_csv(oe_path, OE_SCORES)
    rows = [i for i, c in enumerate(table.clips) if str(c.path) not in new_paths]
    table = ScoreTable(OE_SCORES, [table.clips[i] for i in rows], table.scores[rows])
    parts = [table.select(split="train"), ScoreTable(OE_SCORES, clips, oe), table.select(split="test")]
    ScoreTable.concat(parts, OE_SCORES).to_csv(oe_path)
