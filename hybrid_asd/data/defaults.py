"""Defaults of the ``data`` config section."""

DATA_DEFAULTS = {
    "root": None,  # data root holding <machine>/{train,source_test,target_test,test}/
    "machine": None,  # machine type of this experiment
    "ground_truth": None,  # folder of ground_truth_*.csv for unlabelled evaluation names
    "sample_rate": 16000,
    "channel": 0,  # channel taken from multichannel files (0 as in the 2021 task)
    "duration": None,  # seconds; clips are padded or cropped to it; null keeps their length
    "resample": True,  # false: refuse files at another sample rate instead of resampling
}
