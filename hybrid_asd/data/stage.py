"""The ``prepare`` stage: list the machine type's train and test clips into the experiment."""

from __future__ import annotations

import logging

from hybrid_asd.config import Config
from hybrid_asd.data.audio import audio_info
from hybrid_asd.data.channels import describe_channel
from hybrid_asd.data.clips import Clip
from hybrid_asd.data.manifest import scan
from hybrid_asd.data.names import SUPPLEMENTAL
from hybrid_asd.data.supplemental import as_training_clips, check_supplemental
from hybrid_asd.errors import DataError, StageError
from hybrid_asd.experiment import Experiment

log = logging.getLogger(__name__)


def run_prepare(exp: Experiment, config: Config, *, progress: bool = True) -> tuple[list[Clip], list[Clip]]:
    """Write ``manifest/train.csv`` and ``manifest/test.csv`` of ``data.machine`` under ``data.root``
    (and ``manifest/supplemental.csv`` when it has DCASE 2025+ supplemental clips; those of
    ``data.supplemental.train_kinds`` join the training clips with ``use: train | both``)."""
    data = config.data
    if data.root is None:
        raise StageError("data.root is not set (pass --data-root)")
    if not data.machine:
        raise StageError("data.machine is not set (pass --machine)")
    manifest = scan(data.root, machines=[data.machine], ground_truth=data.ground_truth)
    for path, reason in manifest.problems:
        log.warning("skipped %s: %s", path, reason)
    train = manifest.select(machine=data.machine, split="train")
    test = manifest.select(machine=data.machine, split="test")
    supplemental = manifest.select(machine=data.machine, split=SUPPLEMENTAL)
    if not train:
        raise DataError(f"no training clips for machine type {data.machine!r} under {data.root}")
    check_supplemental(supplemental, data.supplemental, data.root / data.machine / SUPPLEMENTAL)
    if data.supplemental.as_train:
        extra = as_training_clips(supplemental, data.supplemental)
        log.info("%d supplemental clip(s) of kinds %s join the %d training clips", len(extra),
                 data.supplemental.train_kinds, len(train))
        train = train + extra
    exp.write_clips("train", train)
    exp.write_clips("test", test)
    if supplemental:
        exp.write_clips("supplemental", supplemental)
    else:
        exp.manifest_path("supplemental").unlink(missing_ok=True)  # from an earlier data root
    try:
        channels = audio_info(train[0].path)["channels"]
    except DataError:  # reported by the stage that reads it
        channels = 1
    if channels > 1:
        log.info("%s has %d channels; %s", train[0].path.name, channels, describe_channel(data.channel))
    log.info("prepared %s: %d train and %d test clips\n%s", exp.root, len(train), len(test), manifest.summary())
    return train, test
