"""How the stages use DCASE 2025+ supplemental clips (``data.supplemental``; the clips themselves are
parsed by :mod:`hybrid_asd.data.names` and listed in ``manifest/supplemental.csv``).

- as normal training clips (``use: train | both``): the clips of ``train_kinds`` join the training
  list with split "train" and domain "source" (their names carry no domain; the source domain is the
  one with many training clips, and a clean recording of the machine is closest to it);
- as background noise for the extractor (``use: noise | both``): the clips of ``noise_kinds``
  (:mod:`hybrid_asd.extractor.noise`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from hybrid_asd.data.clips import Clip
from hybrid_asd.data.settings import SupplementalSettings
from hybrid_asd.errors import DataError

__all__ = ["as_training_clips", "noise_clips", "check_supplemental"]


def as_training_clips(clips: Sequence[Clip], settings: SupplementalSettings) -> list[Clip]:
    """The clips of ``train_kinds`` as normal source-domain training clips (kind kept)."""
    return [replace(c, split="train", domain="source", label="normal") for c in clips
            if c.kind in settings.train_kinds]


def noise_clips(clips: Sequence[Clip], settings: SupplementalSettings) -> list[Clip]:
    """The clips of ``noise_kinds`` (background noise for the extractor)."""
    return [c for c in clips if c.kind in settings.noise_kinds]


def check_supplemental(clips: Sequence[Clip], settings: SupplementalSettings, where: str | Path) -> None:
    """Raise :class:`DataError` when ``use`` asks for kinds of which ``clips`` hold none."""
    found = sorted({c.kind for c in clips})
    wanted = []
    if settings.as_train:
        wanted.append(("train_kinds", settings.train_kinds))
    if settings.as_noise:
        wanted.append(("noise_kinds", settings.noise_kinds))
    for key, kinds in wanted:
        if not any(c.kind in kinds for c in clips):
            raise DataError(f"data.supplemental.use = {settings.use!r}, but {where} holds no supplemental clip of "
                            f"{key} {kinds} (kinds found: {', '.join(found) or 'none'}); set "
                            f"data.supplemental.{key} or use: none")
