"""Log-mel front end (torch, batched), patching and the on-disk feature cache.

- :class:`LogMel` / :func:`compute_logmel`: log-mel of the official DCASE Task 2 baselines.
- :func:`make_patches`, :func:`stack_frames`, :func:`clip_statistics`: detector/extractor inputs.
- :class:`FeatureCache`: per-clip log-mels computed once and stored under a content-hash key.
"""

from hybrid_asd.features.cache import FeatureCache, default_cache_dir
from hybrid_asd.features.logmel import LogMel, compute_logmel, slaney_mel_filterbank
from hybrid_asd.features.patches import clip_statistics, make_patches, n_patches, stack_frames

__all__ = [
    "FeatureCache",
    "LogMel",
    "clip_statistics",
    "compute_logmel",
    "default_cache_dir",
    "make_patches",
    "n_patches",
    "slaney_mel_filterbank",
    "stack_frames",
]
