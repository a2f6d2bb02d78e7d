"""Z-normalisation of one detector's scores with statistics of normal training clips.

Statistics (mean, standard deviation) are computed per machine type and section, or per machine
type, section and domain (``per_domain=True``), from the ``split == "train"`` rows of a score
table. Those rows hold *out-of-fold* scores of normal training clips (the detector stage
cross-fits them), so they are not biased low the way in-sample scores would be (a kNN distance
of a clip to itself is zero). See docs/ensemble.md.

Few-shot target domain: with ``per_domain=True`` a domain group with fewer than ``min_clips``
training rows (DCASE 2021 gives 3 target clips per section) keeps its own mean but has its
variance shrunk towards the section's pooled variance (all domains together)::

    var = ((n - 1) * var_group + min_clips * var_section) / ((n - 1) + min_clips)

i.e. the section variance acts as a prior worth ``min_clips`` pseudo-observations; with one clip
the group variance is the section variance, with many it is its own. A domain without any
training rows uses the section statistics.

Reference subset: ``reference`` (a set of clip paths) restricts the statistics to those train
rows, per section; a section with fewer than 2 of them, or whose reference rows all score the same
(two clips that are each other's nearest neighbour have the same kNN score), uses all its train rows
(with a warning).
The fuse stage passes the OE classifier's held-out validation clips here, because the other OE
train rows are scores of clips the classifier was trained on (biased low; docs/ensemble.md).

A standard deviation that is zero (constant scores)
is an error: dividing by an epsilon would blow the detector's z-scores up and let it dominate
any fusion, which is worse than stopping with a clear message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Collection

import numpy as np

from hybrid_asd.errors import ScoreError
from hybrid_asd.scores import ScoreTable, held_out_rows

log = logging.getLogger(__name__)

GroupKey = tuple  # (machine, section) or (machine, section, domain)

# A std at or below this fraction of max(1, |mean|) counts as zero (constant scores).
ZERO_STD_RTOL = 1e-12


@dataclass(frozen=True)
class GroupStats:
    mean: float
    std: float
    n: int


@dataclass
class ZNorm:
    """Fitted z-normalisation statistics of one detector.

    ``section_stats`` maps (machine, section) to statistics over all domains; ``domain_stats``
    maps (machine, section, domain) to the (shrunk) per-domain statistics and is empty unless
    ``per_domain``.
    """

    detector: str
    per_domain: bool
    min_clips: int
    section_stats: dict[tuple[str, int], GroupStats] = field(default_factory=dict)
    domain_stats: dict[tuple[str, int, str], GroupStats] = field(default_factory=dict)
    source: str = ""

    def stats_for(self, machine: str, section: int, domain: str) -> GroupStats:
        """Statistics used for a clip of this machine type, section and domain."""
        if self.per_domain and (machine, section, domain) in self.domain_stats:
            return self.domain_stats[(machine, section, domain)]
        try:
            return self.section_stats[(machine, section)]
        except KeyError:
            where = f" ({self.source})" if self.source else ""
            known = ", ".join(f"{m}/section_{s:02d}" for m, s in sorted(self.section_stats)) or "none"
            raise ScoreError(
                f"detector {self.detector!r}{where}: no normal training scores (split=train rows) for "
                f"{machine} section_{section:02d}; z-normalisation statistics exist for: {known}"
            ) from None

    def apply(self, table: ScoreTable) -> ScoreTable:
        """Return a copy of ``table`` with every score replaced by (score - mean) / std."""
        means = np.empty(len(table))
        stds = np.empty(len(table))
        cache: dict[tuple[str, int, str], GroupStats] = {}
        for i, clip in enumerate(table.clips):
            key = (clip.machine, clip.section, clip.domain)
            if key not in cache:
                cache[key] = self.stats_for(*key)
            means[i], stds[i] = cache[key].mean, cache[key].std
        return ScoreTable(table.detector, list(table.clips), (table.scores - means) / stds, table.source)

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON/YAML friendly)."""

        def rows(stats: dict, with_domain: bool) -> list[dict[str, Any]]:
            out = []
            for key, st in sorted(stats.items()):
                row: dict[str, Any] = {"machine": key[0], "section": int(key[1])}
                if with_domain:
                    row["domain"] = key[2]
                row.update(mean=float(st.mean), std=float(st.std), n=int(st.n))
                out.append(row)
            return out

        return {
            "detector": self.detector,
            "per_domain": self.per_domain,
            "min_clips": self.min_clips,
            "source": self.source,
            "sections": rows(self.section_stats, False),
            "domains": rows(self.domain_stats, True),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ZNorm":
        try:
            return cls(
                detector=str(data["detector"]),
                per_domain=bool(data["per_domain"]),
                min_clips=int(data["min_clips"]),
                section_stats={
                    (r["machine"], int(r["section"])): GroupStats(float(r["mean"]), float(r["std"]), int(r["n"]))
                    for r in data["sections"]
                },
                domain_stats={
                    (r["machine"], int(r["section"]), r["domain"]): GroupStats(
                        float(r["mean"]), float(r["std"]), int(r["n"])
                    )
                    for r in data.get("domains", [])
                },
                source=str(data.get("source", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ScoreError(f"z-normalisation statistics: malformed dict ({exc!r})") from None


def fit_znorm(
    table: ScoreTable,
    per_domain: bool = False,
    min_clips: int = 10,
    reference: Collection[str] | None = None,
) -> ZNorm:
    """Fit z-normalisation statistics on the ``split == "train"`` rows of ``table``.

    Standard deviations use ``ddof=1``. With ``per_domain``, groups with fewer than ``min_clips``
    rows get their variance shrunk towards the section variance. ``reference``: clip paths whose
    train rows are held out (unbiased); only those are used where a section has 2 or more
    (module docstring).
    """
    if min_clips < 1:
        raise ScoreError(f"min_clips must be >= 1, got {min_clips}")
    train = table.select(split="train")
    where = f" ({table.source})" if table.source else ""
    if len(train) == 0:
        raise ScoreError(
            f"detector {table.detector!r}{where}: no split=train rows; z-normalisation needs out-of-fold "
            "scores of normal training clips (rerun the 'score' stage)"
        )
    train.check_finite()
    if reference is not None:
        train = held_out_rows(train, reference, min_rows=2, purpose="z-normalising", need_spread=True)
    znorm = ZNorm(table.detector, per_domain, min_clips, source=table.source)
    groups = _group_indices(train, with_domain=True)
    sections: dict[tuple[str, int], list[np.ndarray]] = {}
    for (machine, section, _domain), idx in groups.items():
        sections.setdefault((machine, section), []).append(idx)
    for key, parts in sections.items():
        values = train.scores[np.concatenate(parts)]
        znorm.section_stats[key] = _checked(table, key, values, _moments(values))
    if per_domain:
        for (machine, section, domain), idx in groups.items():
            values = train.scores[idx]
            sec = znorm.section_stats[(machine, section)]
            stats = _shrunk_moments(values, sec, min_clips)
            if len(values) < min_clips:
                log.info(
                    "%s %s section_%02d %s: %d training clip(s) < %d; variance shrunk towards the section's",
                    table.detector, machine, section, domain, len(values), min_clips,
                )
            znorm.domain_stats[(machine, section, domain)] = _checked(
                table, (machine, section, domain), values, stats
            )
    return znorm


def znormalise(
    table: ScoreTable, per_domain: bool = False, min_clips: int = 10, reference: Collection[str] | None = None
) -> ScoreTable:
    """Fit on the table's own train rows (or their ``reference`` subset) and apply to all its rows."""
    return fit_znorm(table, per_domain=per_domain, min_clips=min_clips, reference=reference).apply(table)


# --- helpers ---------------------------------------------------------------------------------
def _group_indices(table: ScoreTable, with_domain: bool) -> dict[GroupKey, np.ndarray]:
    groups: dict[GroupKey, list[int]] = {}
    for i, clip in enumerate(table.clips):
        key = (clip.machine, clip.section, clip.domain) if with_domain else (clip.machine, clip.section)
        groups.setdefault(key, []).append(i)
    return {k: np.asarray(v) for k, v in groups.items()}


def _moments(values: np.ndarray) -> GroupStats:
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return GroupStats(float(np.mean(values)), std, len(values))


def _shrunk_moments(values: np.ndarray, section: GroupStats, min_clips: int) -> GroupStats:
    n = len(values)
    if n >= min_clips:
        return _moments(values)
    own_var = float(np.var(values, ddof=1)) if n > 1 else 0.0
    var = ((n - 1) * own_var + min_clips * section.std**2) / ((n - 1) + min_clips)
    return GroupStats(float(np.mean(values)), float(np.sqrt(var)), n)


def _checked(table: ScoreTable, key: GroupKey, values: np.ndarray, stats: GroupStats) -> GroupStats:
    if stats.std <= ZERO_STD_RTOL * max(1.0, abs(stats.mean)):
        where = f" ({table.source})" if table.source else ""
        group = f"{key[0]} section_{key[1]:02d}" + (f" {key[2]}" if len(key) > 2 else "")
        raise ScoreError(
            f"detector {table.detector!r}{where}: the {len(values)} normal training score(s) of {group} "
            f"have zero spread (all {stats.mean!r}); cannot z-normalise. The detector looks broken "
            "(constant output) or the group has a single training clip"
        )
    return stats
