"""Decision thresholds from out-of-sample scores of normal training clips.

The DCASE baselines fit a gamma distribution (shape, location and scale all free) to the anomaly
scores of the normal training clips of a section and put the threshold at its 0.9 quantile; a test
clip is anomalous when its score exceeds the threshold. Two things make that go wrong, and both are
handled here:

- **In-sample scores** run low (a kNN distance of a clip to itself is 0; a classifier is sure of its
  training clips). The train rows of our score tables are out-of-sample: inlier detectors' rows are
  cross-fitted by the detector stage; for OE (and a fused table holding OE) only the extractor's
  held-out validation clips are, and ``reference`` restricts the fit to them, the same rows that
  z-normalisation uses (:func:`hybrid_asd.ensemble.stage.discover_references`).
- **A three-parameter gamma MLE that fails**: on scores of a small scale (kNN cosine distances of
  1e-3) ``scipy.stats.gamma.fit`` stays near its starting scale of 1 and returns a shape far below 1
  whose 0.9 quantile lies far above every score (measured on the demo data: kNN 0.32 against a
  maximum training score of 0.019); on skewed scores piled up near their minimum the MLE itself
  degenerates (shape -> 0, location -> minimum). So the fit is made on standardised scores, and it is
  accepted only if it agrees with the scores it was fitted to (:func:`fit_agrees`); otherwise the
  empirical quantile is the threshold.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Collection, Mapping

import numpy as np
import scipy.stats

from hybrid_asd.errors import ScoreError
from hybrid_asd.scores import ScoreTable, held_out_rows
from hybrid_asd.utils import atomic_write_text

log = logging.getLogger(__name__)

Key = tuple[str, int, str]  # (machine, section, domain)
DOMAINS = ("source", "target")
# Fewest train rows of one domain for that domain to get its own threshold (see section_thresholds).
MIN_DOMAIN_ROWS = 20
# Fewest held-out reference rows of a section for the fit to use only them (else all its train rows).
MIN_REFERENCE_ROWS = 5
# A fitted threshold is refused when the count of scores above it is this improbable under the fit.
FIT_CHECK_LEVEL = 0.999
THRESHOLD_COLUMNS = ("machine", "section", "domain", "threshold")


def fit_agrees(scores: np.ndarray, threshold: float, quantile: float) -> bool:
    """Whether a threshold fitted at ``quantile`` is consistent with the ``scores`` it came from.

    Under the fit, the number of scores above the threshold is Binomial(n, 1 - quantile); the fit is
    refused when the observed count lies outside its central ``FIT_CHECK_LEVEL`` interval, or when the
    threshold lies outside the scores' range widened by that range on each side (a check that also
    holds for a handful of scores, where the binomial interval is wide).
    """
    lo, hi = float(np.min(scores)), float(np.max(scores))
    span = hi - lo
    if not lo - span <= threshold <= hi + span:
        return False
    above = int(np.sum(scores > threshold))
    low, high = scipy.stats.binom.interval(FIT_CHECK_LEVEL, scores.size, 1.0 - quantile)
    return low <= above <= high


def gamma_threshold(normal_scores: np.ndarray, quantile: float = 0.9) -> float:
    """The ``quantile`` of a gamma distribution fitted to normal-clip scores (``scipy.stats.gamma``).

    Falls back to the empirical quantile when the scores are degenerate (fewer than 3 distinct
    values; a warning), or the fit fails, gives a non-finite threshold or one that disagrees with the
    scores (:func:`fit_agrees`; logged).
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
            # Fitted to standardised scores, mapped back: the family is closed under location and
            # scale, and the optimiser, which starts at scale 1, gets stuck there on scores of scale 1e-3.
            centre, spread = float(np.mean(scores)), float(np.std(scores))
            params = scipy.stats.gamma.fit((scores - centre) / spread)
            threshold = centre + spread * float(scipy.stats.gamma.ppf(quantile, *params))
    except Exception as exc:  # noqa: BLE001 - any fit failure falls back the same way
        log.warning("gamma fit failed (%s): using the empirical %.2f quantile as threshold", exc, quantile)
        return empirical
    if not np.isfinite(threshold):
        log.warning("gamma fit gave threshold %s: using the empirical %.2f quantile", threshold, quantile)
        return empirical
    if not fit_agrees(scores, threshold, quantile):
        log.info("gamma fit (shape %.3g) puts the %.2f quantile at %.6g, where %d of %d normal scores (range "
                 "%.6g..%.6g) lie above it: using the empirical quantile %.6g", float(params[0]), quantile,
                 threshold, int(np.sum(scores > threshold)), scores.size, float(scores.min()),
                 float(scores.max()), empirical)
        return empirical
    return threshold


def section_thresholds(table: ScoreTable, quantile: float = 0.9, min_domain_rows: int = MIN_DOMAIN_ROWS,
                       reference: Collection[str] | None = None) -> dict[Key, float]:
    """Thresholds per (machine, section, domain) from the table's ``split == "train"`` rows.

    ``reference``: the clip paths whose train rows are out-of-sample (OE's held-out validation
    clips); where a section has at least ``MIN_REFERENCE_ROWS`` of them only those are used.

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
    train = held_out_rows(train, reference, min_rows=MIN_REFERENCE_ROWS, purpose="decision thresholds")
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



def write_thresholds(path: str | Path, thresholds: Mapping[Key, float]) -> None:
    """``machine,section,domain,threshold`` rows (thresholds written with ``repr``: exact round trip)."""
    rows = [",".join(THRESHOLD_COLUMNS)]
    rows += [f"{m},{s:02d},{d},{float(t)!r}" for (m, s, d), t in sorted(thresholds.items())]
    atomic_write_text(path, "\n".join(rows) + "\n")


def read_thresholds(path: str | Path) -> dict[Key, float]:
    """The thresholds :func:`write_thresholds` wrote; a ScoreError naming the file when it is malformed."""
    path = Path(path)
    try:
        lines = [line.split(",") for line in path.read_text().splitlines() if line.strip()]
        if not lines or tuple(lines[0]) != THRESHOLD_COLUMNS:
            raise ValueError(f"header is not {','.join(THRESHOLD_COLUMNS)}")
        return {(m, int(s), d): float(t) for m, s, d, t in lines[1:]}
    except (OSError, ValueError) as exc:
        raise ScoreError(f"{path}: not a thresholds file ({exc}); rerun the stage that wrote it") from None
