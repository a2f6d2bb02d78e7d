"""Decision thresholds from the scores of normal training clips, as the DCASE baselines set them.

The baselines fit a gamma distribution (shape, location and scale all free) to the anomaly
scores of the normal training clips of a section and put the threshold at its 0.9 quantile;
a test clip is anomalous when its score exceeds the threshold.
"""

from __future__ import annotations

import logging
import warnings
from typing import Mapping

import numpy as np
import scipy.stats

from hybrid_asd.errors import ScoreError
from hybrid_asd.scores import ScoreTable

log = logging.getLogger(__name__)

Key = tuple[str, int, str]  # (machine, section, domain)
DOMAINS = ("source", "target")
# Fewest train rows of one domain for that domain to get its own threshold (see section_thresholds).
MIN_DOMAIN_ROWS = 20


def gamma_threshold(normal_scores: np.ndarray, quantile: float = 0.9) -> float:
    """The ``quantile`` of a gamma distribution fitted to normal-clip scores (``scipy.stats.gamma``).

    Falls back to the empirical quantile, with a warning, when the scores are degenerate (fewer
    than 3 distinct values) or the fit fails or gives a non-finite threshold.
    """
    scores = np.asarray(normal_scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ScoreError("no normal scores to set a decision threshold from")
    if not np.all(np.isfinite(scores)):
        raise ScoreError(f"{int(np.sum(~np.isfinite(scores)))} non-finite normal score(s)")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    empirical = float(np.quantile(scores, quantile))
    if np.unique(scores).size < 3:
        log.warning("%d normal scores with %d distinct value(s): using the empirical %.2f quantile as threshold",
                    scores.size, np.unique(scores).size, quantile)
        return empirical
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the optimiser warns freely on awkward samples
            params = scipy.stats.gamma.fit(scores)
            threshold = float(scipy.stats.gamma.ppf(quantile, *params))
    except Exception as exc:  # noqa: BLE001 - any fit failure falls back the same way
        log.warning("gamma fit failed (%s): using the empirical %.2f quantile as threshold", exc, quantile)
        return empirical
    if not np.isfinite(threshold):
        log.warning("gamma fit gave threshold %s: using the empirical %.2f quantile", threshold, quantile)
        return empirical
    return threshold


def section_thresholds(table: ScoreTable, quantile: float = 0.9,
                       min_domain_rows: int = MIN_DOMAIN_ROWS) -> dict[Key, float]:
    """Thresholds per (machine, section, domain) from the table's ``split == "train"`` rows.

    Per section, the threshold is fitted to all its train rows (both domains pooled) and used for
    both domains, except that a domain with at least ``min_domain_rows`` train rows of its own gets
    a threshold fitted to those rows only. (With DCASE's 3 target training clips per section the
    target domain thus shares the pooled threshold, as in the baselines.) Every section with train
    rows gets an entry for both domains, so test clips of either domain are covered.
    """
    train = table.select(split="train")
    if not len(train):
        raise ScoreError(f"detector {table.detector!r}: no train rows to set decision thresholds from")
    train.check_finite(f"train rows of detector {table.detector!r}")
    by_section: dict[tuple[str, int], dict[str, list[float]]] = {}
    for clip, score in zip(train.clips, train.scores):
        by_section.setdefault((clip.machine, clip.section), {}).setdefault(clip.domain, []).append(float(score))
    out: dict[Key, float] = {}
    for (machine, section), domains in sorted(by_section.items()):
        pooled = gamma_threshold(np.concatenate([np.asarray(v) for v in domains.values()]), quantile)
        for domain in sorted(set(DOMAINS) | set(domains)):
            own = domains.get(domain, [])
            out[(machine, section, domain)] = (
                gamma_threshold(np.asarray(own), quantile) if len(own) >= min_domain_rows else pooled
            )
    return out


def decisions_from_thresholds(table: ScoreTable, thresholds: Mapping[Key, float] | float
                              ) -> dict[Key, dict[str, int]]:
    """{(machine, section, domain): {clip file name: 1 if score > threshold else 0}} for test rows,
    the ``decisions`` argument of ``metrics.evaluate_scores``."""
    out: dict[Key, dict[str, int]] = {}
    test = table.select(split="test")
    for clip, score in zip(test.clips, test.scores):
        key = (clip.machine, clip.section, clip.domain)
        if isinstance(thresholds, Mapping):
            if key not in thresholds:
                raise ScoreError(f"no decision threshold for {key}")
            threshold = float(thresholds[key])
        else:
            threshold = float(thresholds)
        out.setdefault(key, {})[clip.name] = int(score > threshold)
    return out

