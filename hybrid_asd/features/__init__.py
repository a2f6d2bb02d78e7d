"""Log-mel front end (torch, batched), patching and the on-disk feature cache.

- :mod:`~hybrid_asd.features.logmel`: :class:`LogMel` / :func:`compute_logmel`, the log-mel of the
  official DCASE Task 2 baselines.
- :mod:`~hybrid_asd.features.patches`: :func:`make_patches`, :func:`stack_frames`,
  :func:`clip_statistics`: detector/extractor inputs.
- :mod:`~hybrid_asd.features.cache`: :class:`FeatureCache`, per-clip log-mels computed once and
  stored under a content-hash key.
- :mod:`~hybrid_asd.features.settings`: the ``features`` config section.
- :mod:`~hybrid_asd.features.stage`: the ``features`` stage.

Submodules are imported on use (``from hybrid_asd.features.cache import FeatureCache``): the
package itself stays free of torch, so loading a config does not load it.
"""
