"""The ``prepare`` stage: list the machine type's train and test clips into the experiment."""

from __future__ import annotations

import logging

from hybrid_asd.config import Config
from hybrid_asd.data.clips import Clip
from hybrid_asd.data.manifest import no_training_clips_reason, scan
from hybrid_asd.errors import DataError, StageError
from hybrid_asd.experiment import Experiment

log = logging.getLogger(__name__)


def find_clips(config: Config, *, report: bool = True) -> tuple[list[Clip], list[Clip]]:
    """The train and test clips of ``data.machine`` under ``data.root``; a DataError/StageError that
    says what to fix when the root is missing or holds no training clip. Called before a config is
    saved too (``prepare``, ``run``), so that fixing a typo needs no ``--overwrite``."""
    data = config.data
    if data.root is None:
        raise StageError("data.root is not set (pass --data-root)")
    if not data.machine:
        raise StageError("data.machine is not set (pass --machine)")
    manifest = scan(data.root, machines=[data.machine], ground_truth=data.ground_truth,
                    mimii_test_normals=data.mimii_test_normals)
    if report:
        for path, reason in manifest.problems:
            log.warning("skipped %s: %s", path, reason)
    train = manifest.select(machine=data.machine, split="train")
    test = manifest.select(machine=data.machine, split="test")
    if not train:
        raise DataError(f"{data.root}: no training clips for machine type {data.machine!r}: "
                        f"{no_training_clips_reason(manifest, data.machine)}")
    if report:
        log.info("%s", manifest.summary())
    return train, test


def run_prepare(exp: Experiment, config: Config, *, progress: bool = True) -> tuple[list[Clip], list[Clip]]:
    """Write ``manifest/train.csv`` and ``manifest/test.csv`` of ``data.machine`` under ``data.root``."""
    train, test = find_clips(config)
    adapted = exp.adapted_clips()
    if adapted:  # clips added by 'adapt' stay training clips (unless the data root now holds them too)
        scanned = {str(c.path) for c in train}
        extra = [c for c in adapted if str(c.path) not in scanned]
        log.info("keeping %d clip(s) added by 'adapt' (%s)", len(extra), exp.adapted_manifest_path)
        train = train + extra
    changed = exp.clips_differ("train", train) or exp.clips_differ("test", test)
    exp.write_clips("train", train)
    exp.write_clips("test", test)
    if changed:
        # The clip lists are every later stage's input: their markers no longer describe the outputs.
        log.warning("%s: the clip lists changed; later stages will rerun", exp.root)
        exp.clear_stages_after("prepare")
    log.info("prepared %s: %d train and %d test clips", exp.root, len(train), len(test))
    return train, test
