"""The ``data`` config section: where the clips are and how audio is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Field, WithJsonSchema

from hybrid_asd.data.channels import CHANNEL_MODES
from hybrid_asd.settings import Bool, NonNegativeInt, PositiveFloat, PositiveInt, Section


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
