"""The ``prepare`` stage: list the machine type's train and test clips into the experiment."""

from __future__ import annotations

import logging

from hybrid_asd.config import Config
from hybrid_asd.data.audio import audio_info
from hybrid_asd.data.channels import describe_channel
from hybrid_asd.data.clips import Clip
from hybrid_asd.data.manifest import no_training_clips_reason, scan
from hybrid_asd.data.names import SUPPLEMENTAL
from hybrid_asd.data.supplemental import as_training_clips, check_supplemental
from hybrid_asd.errors import DataError, StageError
from hybrid_asd.experiment import Experiment

log = logging.getLogger(__name__)


def _scan_clips(config: Config, *, report: bool = True) -> tuple[list[Clip], list[Clip], list[Clip]]:
    """Train, test and supplemental clips of ``data.machine`` (see :func:`find_clips`)."""
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
    supplemental = manifest.select(machine=data.machine, split=SUPPLEMENTAL)
    if not train:
        raise DataError(f"{data.root}: no training clips for machine type {data.machine!r}: "
                        f"{no_training_clips_reason(manifest, data.machine)}")
    check_supplemental(supplemental, data.supplemental, data.root / data.machine / SUPPLEMENTAL)
    if data.supplemental.as_train:
        extra = as_training_clips(supplemental, data.supplemental)
        if report:
            log.info("%d supplemental clip(s) of kinds %s join the %d training clips", len(extra),
                     data.supplemental.train_kinds, len(train))
        train = train + extra
    if report:
        log.info("%s", manifest.summary())
    return train, test, supplemental


def find_clips(config: Config, *, report: bool = True) -> tuple[list[Clip], list[Clip]]:
    """The train and test clips of ``data.machine`` under ``data.root`` (with the supplemental clips
    of ``data.supplemental.train_kinds`` among the training clips with ``use: train | both``); a
    DataError/StageError that says what to fix when the root is missing, holds no training clip or
    lacks the supplemental clips asked for. Called before a config is saved too (``prepare``,
    ``run``), so that fixing a typo needs no ``--overwrite``."""
    train, test, _ = _scan_clips(config, report=report)
    return train, test


def run_prepare(exp: Experiment, config: Config, *, progress: bool = True) -> tuple[list[Clip], list[Clip]]:
    """Write ``manifest/train.csv`` and ``manifest/test.csv`` of ``data.machine`` under ``data.root``
    (and ``manifest/supplemental.csv`` when it has DCASE 2025+ supplemental clips; those of
    ``data.supplemental.train_kinds`` join the training clips with ``use: train | both``)."""
    data = config.data
    train, test, supplemental = _scan_clips(config)
    adapted = exp.adapted_clips()
    if adapted:  # clips added by 'adapt' stay training clips (unless the data root now holds them too)
        scanned = {str(c.path) for c in train}
        extra = [c for c in adapted if str(c.path) not in scanned]
        log.info("keeping %d clip(s) added by 'adapt' (%s)", len(extra), exp.adapted_manifest_path)
        train = train + extra
    changed = (exp.clips_differ("train", train) or exp.clips_differ("test", test)
               or exp.clips_differ("supplemental", supplemental))
    exp.write_clips("train", train)
    exp.write_clips("test", test)
    if supplemental:
        exp.write_clips("supplemental", supplemental)
    else:
        exp.manifest_path("supplemental").unlink(missing_ok=True)  # from an earlier data root
    if changed:
        # The clip lists are every later stage's input: their markers no longer describe the outputs.
        log.warning("%s: the clip lists changed; later stages will rerun", exp.root)
        exp.clear_stages_after("prepare")
    try:
        channels = audio_info(train[0].path)["channels"]
    except DataError:  # reported by the stage that reads it
        channels = 1
    if channels > 1:
        log.info("%s has %d channels; %s", train[0].path.name, channels, describe_channel(data.channel))
    log.info("prepared %s: %d train and %d test clips", exp.root, len(train), len(test))
    return train, test
