"""The ``prepare`` stage: list the machine type's train and test clips into the experiment."""

from __future__ import annotations

import logging

from hybrid_asd.config import Config
from hybrid_asd.data.clips import Clip
from hybrid_asd.data.manifest import scan
from hybrid_asd.errors import DataError, StageError
from hybrid_asd.experiment import Experiment

log = logging.getLogger(__name__)


def run_prepare(exp: Experiment, config: Config, *, progress: bool = True) -> tuple[list[Clip], list[Clip]]:
    """Write ``manifest/train.csv`` and ``manifest/test.csv`` of ``data.machine`` under ``data.root``."""
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
    if not train:
        raise DataError(f"no training clips for machine type {data.machine!r} under {data.root}")
    exp.write_clips("train", train)
    exp.write_clips("test", test)
    log.info("prepared %s: %d train and %d test clips\n%s", exp.root, len(train), len(test), manifest.summary())
    return train, test
