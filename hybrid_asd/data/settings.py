"""The ``data`` config section: where the clips are and how audio is loaded."""

from __future__ import annotations

from pathlib import Path

from hybrid_asd.settings import Bool, NonNegativeInt, PositiveFloat, PositiveInt, Section


class DataSettings(Section):
    root: Path | None = None  # data root holding <machine>/{train,source_test,target_test,test}/
    machine: str | None = None  # machine type of this experiment
    ground_truth: Path | None = None  # folder of ground_truth_*.csv for unlabelled evaluation names
    sample_rate: PositiveInt = 16000
    channel: NonNegativeInt = 0  # channel taken from multichannel files (0 as in the 2021 task)
    duration: PositiveFloat | None = None  # seconds; clips are padded or cropped to it; null keeps their length
    resample: Bool = True  # false: refuse files at another sample rate instead of resampling
    # MIMII has no official split: per id, this many normal clips (the first in sorted order) are test
    # clips, the rest training clips; null = as many as the id has abnormal clips (the MIMII baseline)
    mimii_test_normals: NonNegativeInt | None = None
