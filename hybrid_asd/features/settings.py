"""The ``features`` config section: the log-mel front end of the official baselines and the
detector/extractor input geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import model_validator

from hybrid_asd.settings import Bool, InvalidKey, NonNegativeFloat, PositiveFloat, PositiveInt, Section

PAD_MODES = ("reflect", "constant")
PadMode = Literal["reflect", "constant"]


class FeatureSettings(Section):
    n_fft: PositiveInt = 1024
    hop_length: PositiveInt = 512
    n_mels: PositiveInt = 128
    power: PositiveFloat = 2.0
    fmin: NonNegativeFloat = 0.0
    fmax: PositiveFloat | None = None  # null: sample_rate / 2
    center: Bool = True  # centred frames, as librosa: T = 1 + L // hop_length (313 for 10 s)
    pad_mode: PadMode = "reflect"  # librosa <= 0.9 default, what the official baselines ran; or "constant"
    patch_frames: PositiveInt = 64  # P, MobileNetV2 baseline
    patch_hop: PositiveInt = 8  # L, MobileNetV2 baseline: floor((T - P) / L) + 1 = 32 patches for 10 s
    stack_frames: PositiveInt = 5  # AE baseline: 5 x 128 = 640 inputs
    cache_dir: Path | None = None  # null: $HYBRID_ASD_CACHE or ~/.cache/hybrid_asd/features

    @model_validator(mode="after")
    def _band(self) -> "FeatureSettings":
        if self.fmax is not None and self.fmax <= self.fmin:
            raise InvalidKey("fmax", self.fmax, f"must be above fmin ({self.fmin})")
        return self
