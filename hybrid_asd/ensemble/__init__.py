"""Ensemble stage: z-normalisation with normal-clip statistics, fusion rules, weight tuning.

- :mod:`~hybrid_asd.ensemble.znorm`: ``fit_znorm`` / ``ZNorm`` (statistics from out-of-fold
  scores of normal training clips, per machine type and section, optionally per domain).
- :mod:`~hybrid_asd.ensemble.fusion`: ``RULES`` (weighted_sum, max, min, rank_mean), ``fuse``,
  ``align_tables``.
- :mod:`~hybrid_asd.ensemble.tune`: ``tune_weights`` -> ``TuneResult`` (simplex grid or
  differential evolution; leave-one-section-out estimates).
- :mod:`~hybrid_asd.ensemble.stage`: ``run_fuse``, the ``hybrid-asd fuse`` stage.

See docs/ensemble.md.
"""

from hybrid_asd.ensemble.fusion import RULES, align_tables, fuse
from hybrid_asd.ensemble.znorm import ZNorm, fit_znorm

__all__ = ["RULES", "ZNorm", "align_tables", "fit_znorm", "fuse"]
