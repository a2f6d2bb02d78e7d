"""Interrupting a training run after a given epoch, as a crash or a killed job would (resume tests)."""

from __future__ import annotations

from typing import Any, Callable

import pytest


class StopTraining(Exception):
    """Raised from ``on_epoch_end`` to stop a training run."""


def train_interrupted(train: Callable[..., Any], *args: Any, after_epoch: int, **kwargs: Any) -> None:
    """Call ``train(*args, **kwargs)`` and stop it at the end of epoch index ``after_epoch`` (0-based),
    asserting that it was stopped there and did not finish."""

    def stop(epoch: int, row: dict) -> None:
        if epoch == after_epoch:
            raise StopTraining

    with pytest.raises(StopTraining):
        train(*args, on_epoch_end=stop, **kwargs)
