"""The ``features`` stage: fill the log-mel cache for every clip of the experiment."""

from __future__ import annotations

from hybrid_asd.config import Config
from hybrid_asd.experiment import Experiment
from hybrid_asd.features.cache import FeatureCache


def run_features(exp: Experiment, config: Config, *, progress: bool = True) -> int:
    """Compute the missing cache entries; returns how many were computed."""
    clips = exp.train_clips() + exp.test_clips()
    return FeatureCache(config.features, config.data).ensure([c.path for c in clips], progress=progress)
