"""Detector stage: fit inlier models per section (and domain) and score clips.

Reads the experiment's manifest and, depending on each detector entry's ``input``, its
embeddings (serial hybrid) or log-mel features from the cache (parallel hybrid, AE baseline).
Domain handling is done by ``DomainAdaptiveDetector`` (one place for all detectors); this module
only loops over sections, aggregates row scores to clip scores (mean) and writes files.

Outputs per detector id::

    detectors/<id>/section_<nn>/      fitted detector (or detectors/<id>/all/ when per_section is false)
    detectors/<id>/train_scores.csv   out-of-fold scores of the normal training clips
    scores/<id>.csv                   train (out-of-fold) + test rows: the score table
    submission/<id>/                  official anomaly_score_* / decision_result_* files
"""

from __future__ import annotations

import inspect
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hybrid_asd.data.clips import Clip, read_clip_list
from hybrid_asd.errors import ConfigError, StageError
from hybrid_asd.experiment import Experiment
from hybrid_asd.scores import ScoreTable

log = logging.getLogger(__name__)

INPUT_KINDS = ("embedding", "logmel_stats", "logmel_frames")


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
def build_rows(kind: str, clips: list[Clip], exp: Experiment, config: dict[str, Any], progress: bool = True) -> Rows:
    """Detector input rows for ``clips`` (one row per clip, or per frame for ``logmel_frames``)."""
    if kind == "embedding":
        return Rows(load_embeddings(exp, clips), np.arange(len(clips)))
    if kind in ("logmel_stats", "logmel_frames"):
        from hybrid_asd.features.cache import FeatureCache
        from hybrid_asd.features.patches import clip_statistics

        cache = FeatureCache(config["features"], config["data"])
        logmels = cache.get_many([c.path for c in clips], progress=progress)
        if kind == "logmel_stats":
            return Rows(np.stack([clip_statistics(m) for m in logmels]).astype(np.float32), np.arange(len(clips)))
        return stacked_frame_rows(logmels, int(config["features"]["stack_frames"]))
    raise ConfigError(f"unknown detector input {kind!r}; known: {', '.join(INPUT_KINDS)}")


def stacked_frame_rows(logmels: list[np.ndarray], n_frames: int) -> Rows:
    """Frame-stacked rows of all clips in one preallocated float32 matrix.

    Filled clip by clip rather than concatenated: at DCASE size (6,000 clips x 309 rows x 640
    values, 4.8 GB) a list of blocks plus their concatenation would need twice the memory."""
    from hybrid_asd.features.patches import stack_frames

    counts = [max(int(m.shape[1]) - n_frames + 1, 0) for m in logmels]
    width = n_frames * (int(logmels[0].shape[0]) if logmels else 0)
    X = np.empty((sum(counts), width), dtype=np.float32)
    start = 0
    for logmel, count in zip(logmels, counts):
        X[start : start + count] = stack_frames(logmel, n_frames)
        start += count
    return Rows(X, np.repeat(np.arange(len(logmels)), counts))


def load_embeddings(exp: Experiment, clips: list[Clip]) -> np.ndarray:
    """Embeddings of ``clips`` (by path) from the extract stage's output."""
    clips_csv = exp.require(exp.root / "embeddings" / "clips.csv", "extract")
    table = read_clip_list(clips_csv)
    emb = np.load(exp.require(exp.root / "embeddings" / "embeddings.npy", "extract"))
    if len(table) != len(emb):
        raise StageError(f"{clips_csv}: {len(table)} clips but {len(emb)} embeddings; rerun 'extract'")
    row_of = {str(c.path): i for i, c in enumerate(table)}
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
def model_groups(entry: dict[str, Any], clips: list[Clip]) -> dict[str, np.ndarray]:
    """Clip indices per fitted model: one per section, or one for all sections."""
    if entry.get("per_section", True):
        sections = sorted({c.section for c in clips})
        return {f"section_{s:02d}": np.array([i for i, c in enumerate(clips) if c.section == s]) for s in sections}
    return {"all": np.arange(len(clips))}


def detector_conf(entry: dict[str, Any], device: str, seed: int) -> dict[str, Any]:
    """The entry's conf, with device and seed passed on where the detector takes them."""
    from hybrid_asd.detectors.registry import DETECTORS

    conf = dict(entry.get("conf") or {})
    params = inspect.signature(DETECTORS.get(entry["name"])).parameters
    if "device" in params and "device" not in conf:
        conf["device"] = device
    if "seed" in params and "seed" not in conf:
        conf["seed"] = seed
    return conf


def adaptation_options(entry: dict[str, Any]) -> dict[str, Any]:
    adaptation = entry.get("adaptation") or {}
    return {
        "mode": adaptation.get("mode", "domain_min"),
        "smote": int(adaptation.get("smote", 0)),
        "normalise": adaptation.get("normalise", "auto"),
    }


def make_adaptive(entry: dict[str, Any], device: str, seed: int):
    from hybrid_asd.detectors.adapt import DomainAdaptiveDetector

    return DomainAdaptiveDetector(
        entry["name"],
        detector_conf(entry, device, seed),
        seed=seed,
        n_splits=int((entry.get("adaptation") or {}).get("n_splits", 3)),
        **adaptation_options(entry),
    )


def fit_one_detector(
    entry: dict[str, Any],
    train: list[Clip],
    rows: Rows,
    out_dir: Path,
    *,
    device: str,
    seed: int,
    only_groups: set[str] | None = None,
) -> np.ndarray:
    """Fit ``entry`` per model group on ``rows`` and save the models (all groups, or
    ``only_groups``); return out-of-fold scores of the training clips (NaN outside the groups)."""
    from hybrid_asd.detectors.adapt import cross_fit_scores

    domains_all = np.array([c.domain for c in train])
    sections_all = np.array([c.section for c in train])
    oof = np.full(len(train), np.nan)
    for group, clip_ids in model_groups(entry, train).items():
        if only_groups is not None and group not in only_groups:
            continue
        sub = rows.for_clips(clip_ids)
        row_domains = domains_all[sub.clip_index]
        condition = sections_all[sub.clip_index] if not entry.get("per_section", True) else None
        detector = make_adaptive(entry, device, seed).fit(
            sub.X, row_domains, condition=condition, groups=sub.clip_index
        )
        detector.save(out_dir / group)
        n_splits = int(entry.get("cross_fit_splits", 3))
        if n_splits >= 2:
            row_scores = cross_fit_scores(
                entry["name"], detector_conf(entry, device, seed), sub.X, row_domains,
                groups=sub.clip_index, n_splits=n_splits, seed=seed, condition=condition,
                inner_splits=int((entry.get("adaptation") or {}).get("n_splits", 3)),
                **adaptation_options(entry),
            )
        else:
            log.warning("%s: cross_fit_splits < 2, train-clip scores are in-sample (biased low)", entry["id"])
            row_scores = detector.score_samples(sub.X, condition=condition)
        per_clip = clip_scores(row_scores, sub.clip_index, len(train))
        oof[clip_ids] = per_clip[clip_ids]
    return oof


def run_fit(exp: Experiment, config: dict[str, Any], *, device: str = "cpu", progress: bool = True) -> None:
    """Fit every detector of the config on the experiment's training clips."""
    from hybrid_asd.pipeline import load_manifest

    train, _ = load_manifest(exp)
    entries = config.get("detectors") or []
    if not entries:
        log.info("config has no detectors: nothing to fit")
        exp.mark_done("fit", config)
        return
    seed = int(config.get("seed", 0))
    cache: dict[str, Rows] = {}
    for entry in tqdm(entries, desc="fit detectors", disable=not progress):
        kind = entry["input"]
        if kind not in cache:
            cache[kind] = build_rows(kind, train, exp, config, progress=progress)
        log.info("fitting %s (%s on %s)", entry["id"], entry["name"], kind)
        out_dir = exp.detectors_dir / entry["id"]
        if out_dir.exists():
            shutil.rmtree(out_dir)
        oof = fit_one_detector(entry, train, cache[kind], out_dir, device=device, seed=seed)
        ScoreTable(entry["id"], train, oof).to_csv(out_dir / "train_scores.csv")
    exp.mark_done("fit", config)


# --- scoring --------------------------------------------------------------------------------
def score_one_detector(entry: dict[str, Any], clips: list[Clip], rows: Rows, det_dir: Path) -> np.ndarray:
    from hybrid_asd.detectors.adapt import DomainAdaptiveDetector

    scores = np.full(len(clips), np.nan)
    sections_all = np.array([c.section for c in clips])
    for group, clip_ids in model_groups(entry, clips).items():
        model_dir = det_dir / group
        if not model_dir.is_dir():
            raise StageError(f"{model_dir} is missing: section has no fitted detector (run the 'fit' stage)")
        detector = DomainAdaptiveDetector.load(model_dir)
        sub = rows.for_clips(clip_ids)
        condition = sections_all[sub.clip_index] if not entry.get("per_section", True) else None
        per_clip = clip_scores(detector.score_samples(sub.X, condition=condition), sub.clip_index, len(clips))
        scores[clip_ids] = per_clip[clip_ids]
    return scores


def run_score(exp: Experiment, config: dict[str, Any], *, device: str = "cpu", progress: bool = True) -> None:
    """Score test clips with every fitted detector; write score tables and official files."""
    from hybrid_asd.evaluation.submission import write_submission
    from hybrid_asd.evaluation.thresholds import section_thresholds
    from hybrid_asd.pipeline import load_manifest

    _, test = load_manifest(exp)
    entries = config.get("detectors") or []
    cache: dict[str, Rows] = {}
    for entry in tqdm(entries, desc="score detectors", disable=not progress):
        det_dir = exp.require(exp.root / "detectors" / entry["id"], "fit")
        train_scores = ScoreTable.from_csv(exp.require(det_dir / "train_scores.csv", "fit"), entry["id"])
        kind = entry["input"]
        if kind not in cache:
            cache[kind] = build_rows(kind, test, exp, config, progress=progress)
        test_scores = ScoreTable(entry["id"], test, score_one_detector(entry, test, cache[kind], det_dir))
        test_scores.check_finite(str(det_dir))
        table = ScoreTable.concat([train_scores, test_scores], entry["id"])
        table.to_csv(exp.scores_dir / f"{entry['id']}.csv")
        thresholds = section_thresholds(table, config["evaluation"]["threshold_quantile"])
        write_submission(table, exp.submission_dir / entry["id"], thresholds)
    exp.mark_done("score", config)


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


def new_target_clips(sources: list[Path], machine: str) -> list[Clip]:
    """Parse the new clips; they must be normal clips of this machine type."""
    from dataclasses import replace

    from hybrid_asd.data.names import parse_clip_path

    clips = []
    for path in expand_wav_paths(sources):
        clip = parse_clip_path(path.resolve(), machine=machine)
        if clip.label == "anomaly":
            raise StageError(f"{path}: adapt takes normal clips only, this one is labelled anomaly")
        clips.append(replace(clip, split="train", label="normal"))
    return clips


def run_adapt(
    exp: Experiment, config: dict[str, Any], sources: list[Path], *, device: str = "cpu", progress: bool = True
) -> list[Clip]:
    """Add new normal clips (typically a new target condition) to a fitted experiment.

    Only what depends on them is redone: their features and embeddings, the detectors of the
    sections they belong to (other sections keep their fitted models and scores), and scoring.
    The extractor is not retrained.
    """
    from hybrid_asd.data.clips import write_clip_list
    from hybrid_asd.pipeline import load_manifest

    train, _ = load_manifest(exp)
    known = {str(c.path) for c in train}
    new = [c for c in new_target_clips(sources, config["data"]["machine"]) if str(c.path) not in known]
    if not new:
        log.info("no new clips: every given clip is already part of the training set")
        return []
    train = train + new
    write_clip_list(exp.manifest_dir / "train.csv", train)
    if config.get("extractor") is not None:
        append_embeddings(exp, config, new, device=device, progress=progress)
    groups = {f"section_{s:02d}" for s in {c.section for c in new}}
    seed = int(config.get("seed", 0))
    cache: dict[str, Rows] = {}
    for entry in config.get("detectors") or []:
        out_dir = exp.detectors_dir / entry["id"]
        refit = groups if entry.get("per_section", True) else {"all"}
        if entry["input"] not in cache:  # detectors sharing an input share its rows, as in run_fit
            cache[entry["input"]] = build_rows(entry["input"], train, exp, config, progress=progress)
        oof = fit_one_detector(entry, train, cache[entry["input"]], out_dir, device=device, seed=seed,
                               only_groups=refit)
        old = ScoreTable.from_csv(exp.require(out_dir / "train_scores.csv", "fit"), entry["id"])
        old_by_path = dict(zip(old.keys(), old.scores))
        merged = np.array([s if np.isfinite(s) else old_by_path.get(str(c.path), np.nan) for c, s in zip(train, oof)])
        ScoreTable(entry["id"], train, merged).to_csv(out_dir / "train_scores.csv")
        log.info("%s: refitted %s with %d new clip(s)", entry["id"], ", ".join(sorted(refit)), len(new))
    run_score(exp, config, device=device, progress=progress)
    return new


def append_embeddings(exp: Experiment, config: dict[str, Any], clips: list[Clip], *, device: str, progress: bool) -> None:
    """Embed ``clips`` with the trained extractor and append them to the embeddings files."""
    from hybrid_asd.data.clips import write_clip_list
    from hybrid_asd.extractor.embed import extract
    from hybrid_asd.features.cache import FeatureCache
    from hybrid_asd.utils import atomic_save_npy

    checkpoint = exp.require(exp.root / "extractor" / "checkpoint.pt", "train")
    emb, _ = extract(checkpoint, clips, FeatureCache(config["features"], config["data"]), device=device, progress=progress)
    clips_csv = exp.require(exp.root / "embeddings" / "clips.csv", "extract")
    old_clips = read_clip_list(clips_csv)
    old_emb = np.load(exp.root / "embeddings" / "embeddings.npy")
    # Embeddings first, clip list second: a crash in between leaves a length mismatch that
    # load_embeddings reports, never a silent misalignment.
    atomic_save_npy(exp.root / "embeddings" / "embeddings.npy", np.concatenate([old_emb, emb]))
    write_clip_list(clips_csv, old_clips + clips)
