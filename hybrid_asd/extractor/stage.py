"""The extractor's two pipeline stages on an experiment folder: ``train`` and ``extract``.

- :func:`run_train`: ``manifest/train.csv`` -> ``extractor/checkpoint.pt`` (+ ``train_log.csv``).
- :func:`run_extract`: train and test clips -> ``embeddings/clips.csv``, ``embeddings/embeddings.npy``
  (rows aligned) and ``scores/oe.csv`` (the OE score table).

Each stage skips work that is complete for the same config and marks itself done. ``run_train``
may run under ``torchrun`` (DistributedDataParallel, see docs/extractor.md); ``run_extract`` runs
in one process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hybrid_asd.data.clips import Clip, read_clip_list, write_clip_list
from hybrid_asd.errors import StageError
from hybrid_asd.experiment import Experiment
from hybrid_asd.extractor.ddp import env_world
from hybrid_asd.extractor.embed import extract
from hybrid_asd.extractor.train import CHECKPOINT_NAME, resolve_extractor_conf, train_extractor
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_save_npy, resolve_device

log = logging.getLogger(__name__)

OE_DETECTOR = "oe"


def _feature_cache(config: dict[str, Any], device: str) -> Any:
    from hybrid_asd.features.cache import FeatureCache

    world = env_world()
    if world is not None and device.startswith("cuda"):
        device = f"cuda:{world[2]}"  # under torchrun each process computes cache misses on its own GPU
    return FeatureCache(config["features"], config["data"], device=device)


def _train_clips(exp: Experiment) -> list[Clip]:
    path = exp.require(exp.manifest_dir / "train.csv", "prepare")
    clips = read_clip_list(path)
    if not clips:
        raise StageError(f"{path} lists no clips")
    return clips


def _test_clips(exp: Experiment) -> list[Clip]:
    path = exp.manifest_dir / "test.csv"
    return read_clip_list(path) if path.is_file() else []


def _extractor_conf(config: dict[str, Any]) -> dict[str, Any]:
    if config.get("extractor") is None:
        raise StageError("the config has 'extractor: null': this approach has no feature extractor")
    return resolve_extractor_conf(config["extractor"])


def run_train(exp: Experiment, config: dict[str, Any], device: str, progress: bool = True) -> Path:
    """Train the extractor on the experiment's normal training clips; returns the checkpoint path."""
    conf = _extractor_conf(config)
    ckpt = exp.extractor_dir / CHECKPOINT_NAME
    if exp.stage_done("train", config) and ckpt.is_file():
        log.info("train: done already (%s)", ckpt)
        return ckpt
    # The stage is not marked done (first run, changed config or --force): a checkpoint left from
    # before is stale. An interrupted run's train_state.pt stays and is resumed when it matches.
    ckpt.unlink(missing_ok=True)
    device = resolve_device(device)
    train = [c for c in _train_clips(exp) if c.label == "normal"]
    path = train_extractor(
        train, _feature_cache(config, device), conf, config["features"], exp.extractor_dir,
        device=device, seed=int(config.get("seed", 0)), progress=progress,
    )
    world = env_world()
    if world is None or world[0] == 0:
        exp.mark_done("train", config)
    return path


def run_extract(exp: Experiment, config: dict[str, Any], device: str, progress: bool = True) -> None:
    """Write the embeddings and OE scores of every train and test clip of the experiment."""
    conf = _extractor_conf(config)
    out_clips = exp.embeddings_dir / "clips.csv"
    out_emb = exp.embeddings_dir / "embeddings.npy"
    out_scores = exp.scores_dir / f"{OE_DETECTOR}.csv"
    if exp.stage_done("extract", config) and all(p.is_file() for p in (out_clips, out_emb, out_scores)):
        log.info("extract: done already (%s)", exp.embeddings_dir)
        return
    ckpt = exp.require(exp.extractor_dir / CHECKPOINT_NAME, "train")
    device = resolve_device(device)
    clips = _train_clips(exp) + _test_clips(exp)
    embeddings, scores = extract(
        ckpt, clips, _feature_cache(config, device), device=device,
        batch_size=int(conf["extract_batch_size"]), progress=progress,
    )
    write_clip_list(out_clips, clips)
    atomic_save_npy(out_emb, embeddings)
    # Train rows are the OE scores of the training clips themselves: in-sample (the classifier saw
    # them) except the validation split listed in the checkpoint's meta["val_paths"], so they run
    # lower than unseen normal clips. They are kept for every train clip so that this table aligns
    # with the other detectors' tables; z-normalisation statistics from them are optimistic.
    ScoreTable(OE_DETECTOR, clips, scores).to_csv(out_scores)
    exp.mark_done("extract", config)
