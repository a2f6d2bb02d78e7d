"""The ``features`` stage: fill the log-mel cache for every clip of the experiment (and the noise clips
of ``data.supplemental`` when the extractor mixes them in)."""

from __future__ import annotations

from hybrid_asd.config import Config
from hybrid_asd.data.supplemental import noise_clips
from hybrid_asd.experiment import Experiment
from hybrid_asd.features.cache import FeatureCache


def run_features(exp: Experiment, config: Config, *, progress: bool = True) -> int:
    """Compute the missing cache entries; returns how many were computed."""
    clips = exp.train_clips() + exp.test_clips()
    if config.data.supplemental.as_noise and config.extractor is not None:
        clips += noise_clips(exp.supplemental_clips(), config.data.supplemental)
    return FeatureCache(config.features, config.data).ensure([c.path for c in clips], progress=progress)
