"""The extractor's two pipeline stages on an experiment folder: ``train`` and ``extract``.

- :func:`run_train`: ``manifest/train.csv`` (+ the normal training clips of the machine types in
  ``extractor.train_machines``, listed from ``data.root``) -> ``extractor/checkpoint.pt`` (+ ``train_log.csv``).
- :func:`run_extract`: train and test clips -> ``embeddings/clips.csv``, ``embeddings/embeddings.npy``
  (rows aligned) and ``scores/oe.csv`` (the OE score table; the ``score`` stage writes its
  official files).

A config without an extractor (``extractor: null``) makes both stages no-ops. ``run_train`` may
run under ``torchrun`` (DistributedDataParallel, see docs/extractor.md); ``run_extract`` runs in
one process.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hybrid_asd.config import OE_SCORES, Config
from hybrid_asd.data.clips import Clip, write_clip_list
from hybrid_asd.data.manifest import no_training_clips_reason, scan
from hybrid_asd.data.supplemental import noise_clips
from hybrid_asd.errors import DataError, StageError
from hybrid_asd.experiment import Experiment
from hybrid_asd.extractor.embed import extract
from hybrid_asd.extractor.shared import canonical_order, network_key, store_dir, train_once
from hybrid_asd.extractor.train import train_extractor
from hybrid_asd.extractor.waveforms import WaveformSource
from hybrid_asd.features.cache import FeatureCache
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_save_npy, env_world

log = logging.getLogger(__name__)


def feature_cache(config: Config, device: str) -> FeatureCache:
    world = env_world()
    if world is not None and device.startswith("cuda"):
        device = f"cuda:{world[2]}"  # under torchrun each process computes cache misses on its own GPU
    return FeatureCache(config.features, config.data, device=device)


def extractor_inputs(config: Config, device: str) -> FeatureCache | WaveformSource:
    """What the extractor reads: waveforms for ``input: waveform``, else the log-mel cache."""
    if config.extractor is not None and config.extractor.input == "waveform":
        return WaveformSource(config.data)
    return feature_cache(config, device)


def other_machines_training_clips(config: Config) -> list[Clip]:
    """The normal training clips of the other machine types named in ``extractor.train_machines`` (``all``:
    every other machine type under ``data.root`` with training clips); they join the experiment's own in the
    section-ID task as more classes. A named type without training clips is a DataError naming it."""
    assert config.extractor is not None
    wanted, own, root = config.extractor.train_machines, config.data.machine, config.data.root
    names = None if wanted == "all" else [m for m in wanted if m != own]
    if not wanted or names == []:
        return []
    if root is None:
        raise StageError("data.root is not set (pass --data-root)")
    try:
        manifest = scan(root, machines=names, mimii_test_normals=config.data.mimii_test_normals)
    except DataError as err:
        raise DataError(f"extractor.train_machines: {err}") from err
    machines = names if names is not None else sorted({c.machine for c in manifest.clips} - {own})
    clips: list[Clip] = []
    for machine in machines:
        found = [c for c in manifest.select(machine=machine, split="train") if c.label == "normal"]
        if not found and names is not None:
            raise DataError(f"extractor.train_machines: {root}: no training clips for machine type {machine!r}: "
                            f"{no_training_clips_reason(manifest, machine)}")
        clips += found
    if not clips:
        log.warning("extractor.train_machines: all: %s holds no other machine type's training clips", root)
    else:
        log.info("%d normal training clip(s) of %s join the section-ID task", len(clips),
                 ", ".join(sorted({c.machine for c in clips})))
    return clips


def run_train(exp: Experiment, config: Config, *, device: str, progress: bool = True) -> Path | None:
    """Train the extractor on the experiment's normal training clips (and those of
    ``extractor.train_machines``); returns the checkpoint path."""
    if config.extractor is None:
        log.info("config has no extractor: nothing to train")
        return None
    files = exp.extractor
    # The stage runs, so it is not complete for this config (first run, changed config or --force):
    # a checkpoint left from before is stale. An interrupted run's train_state.pt stays and is
    # resumed when it matches.
    files.checkpoint.unlink(missing_ok=True)
    train = [c for c in exp.train_clips() if c.label == "normal"]
    if not train:
        raise StageError(f"{exp.manifest_path('train')} lists no normal clips")
    supplemental = config.data.supplemental
    noise = noise_clips(exp.supplemental_clips(), supplemental) if supplemental.as_noise else []
    if supplemental.as_noise and not noise:
        raise StageError(f"data.supplemental.use = {supplemental.use!r}, but {exp.manifest_path('supplemental')} "
                         f"lists no clip of noise_kinds {supplemental.noise_kinds}; rerun 'prepare'")
    others = other_machines_training_clips(config)
    if others:  # every type's experiment lists the same clips in the same order: one network (shared.py)
        train = canonical_order(train + others)

    def train_here() -> Path:
        return train_extractor(
            train, extractor_inputs(config, device), config.extractor, config.features, files,
            device=device, seed=config.seed, progress=progress, noise_clips=noise, noise=supplemental,
        )

    if not others or env_world() is not None:
        return train_here()
    return train_once(files, store_dir(config), network_key(config, train, noise), train_here)


def run_extract(exp: Experiment, config: Config, *, device: str, progress: bool = True) -> None:
    """Write the embeddings and OE scores of every train and test clip of the experiment."""
    if config.extractor is None:
        log.info("config has no extractor: nothing to extract")
        return
    checkpoint = exp.require(exp.extractor.checkpoint, "train")
    clips = exp.train_clips() + exp.test_clips()
    embeddings, scores = extract(
        checkpoint, clips, extractor_inputs(config, device), device=device,
        batch_size=config.extractor.extract_batch_size, progress=progress,
    )
    write_clip_list(exp.embedding_clips_path, clips)
    atomic_save_npy(exp.embeddings_path, embeddings)
    # Train rows are the OE scores of the training clips themselves: in-sample (the classifier saw
    # them) except the validation split listed in the checkpoint's meta["val_paths"], so they run
    # lower than unseen normal clips. They are kept for every train clip so that this table aligns
    # with the other detectors' tables; z-normalisation statistics from them are optimistic.
    ScoreTable(OE_SCORES, clips, scores).to_csv(exp.score_table_path(OE_SCORES))
