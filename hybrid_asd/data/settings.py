"""The ``data`` config section: where the clips are and how audio is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from hybrid_asd.data.channels import CHANNEL_MODES
from hybrid_asd.settings import (
    Bool, Float, Fraction, InvalidKey, NonNegativeInt, PositiveFloat, PositiveInt, Section,
)

SUPPLEMENTAL_USES = ("none", "train", "noise", "both")


def _channel(value: Any) -> Any:
    """An index >= 0 (not a boolean or a float), "mean" or "all"; one readable error otherwise."""
    if isinstance(value, str) and value in CHANNEL_MODES:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"must be a channel index >= 0 or one of {', '.join(repr(m) for m in CHANNEL_MODES)}")


# data.channel (hybrid_asd.data.channels): which channel(s) of multi-channel files are used
Channel = Annotated[
    Union[int, str], BeforeValidator(_channel),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0}, {"enum": list(CHANNEL_MODES)}]}),
]


class SupplementalSettings(Section):
    """DCASE 2025+ supplemental clips (``<machine>/supplemental/``, clean machine sound or noise only).

    ``use``: ``none`` (default) ignores them; ``train`` adds the clips of ``train_kinds`` to the normal
    training clips (source domain, the section their name says); ``noise`` mixes the clips of
    ``noise_kinds`` into the extractor's training windows as background noise, at a signal-to-noise
    ratio drawn from ``snr_db`` for a share ``noise_prob`` of the windows
    (:mod:`hybrid_asd.extractor.noise`); ``both`` does both. The kinds are the word after the section
    in the names (``section_00_machine_0001_.wav``: machine).
    """

    use: Literal[SUPPLEMENTAL_USES] = "none"  # type: ignore[valid-type]
    train_kinds: list[str] = Field(default_factory=lambda: ["machine"])  # kinds used as normal training clips
    noise_kinds: list[str] = Field(default_factory=lambda: ["noise"])  # kinds mixed in as background noise
    snr_db: tuple[Float, Float] = (0.0, 20.0)  # SNR range (dB) of the mixed windows, drawn uniformly
    noise_prob: Fraction = 0.5  # share of training windows that get noise

    @model_validator(mode="after")
    def _range(self) -> "SupplementalSettings":
        if self.snr_db[1] < self.snr_db[0]:
            raise InvalidKey("snr_db", list(self.snr_db), "must be [low, high] with low <= high")
        return self

    @property
    def as_train(self) -> bool:
        return self.use in ("train", "both")

    @property
    def as_noise(self) -> bool:
        return self.use in ("noise", "both")


class DataSettings(Section):
    root: Path | None = None  # data root holding <machine>/{train,source_test,target_test,test}/
    machine: str | None = None  # machine type of this experiment
    ground_truth: Path | None = None  # folder of ground_truth_*.csv for unlabelled evaluation names
    sample_rate: PositiveInt = 16000
    # multi-channel files: a channel index (0: DCASE 2026's near microphone, what the official baseline
    # uses), "mean" (mono downmix) or "all" (one log-mel plane per channel); see hybrid_asd.data.channels
    channel: Channel = 0
    duration: PositiveFloat | None = None  # seconds; clips are padded or cropped to it; null keeps their length
    resample: Bool = True  # false: refuse files at another sample rate instead of resampling
    supplemental: SupplementalSettings = Field(default_factory=SupplementalSettings)  # DCASE 2025+
    # MIMII has no official split: per id, this many normal clips (the first in sorted order) are test
    # clips, the rest training clips; null = as many as the id has abnormal clips (the MIMII baseline)
    mimii_test_normals: NonNegativeInt | None = None
