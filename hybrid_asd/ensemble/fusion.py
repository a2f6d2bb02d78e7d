"""Fusion of several detectors' score tables into one ("fused") score table.

Rules (registry ``RULES``, chosen by name), for clip i and detectors j with weights w_ij >= 0:

- ``weighted_sum``: sum_j w_ij * x_ij.
- ``max`` / ``min``: max_j / min_j of w_ij * x_ij over the detectors with w_ij > 0 (with the
  default weights of 1.0 this is the plain maximum / minimum; a weight of 0 drops a detector).
- ``rank_mean``: sum_j w_ij * r_ij / sum_j w_ij, where r_ij is the rank of x_ij among all rows
  of the same (machine, section) for detector j (average ranks for ties), mapped to [0, 1] by
  (rank - 1) / (n - 1). Train and test rows are ranked together so fused train and test scores
  stay on one scale (decision thresholds come from the fused train rows).

Weights are either shared, ``{detector: w}``, or per machine type, ``{machine: {detector: w}}``;
a detector without a weight gets 1.0. Scores are z-normalised first (``normalise="znorm"``,
see :mod:`hybrid_asd.ensemble.znorm`) unless ``normalise="none"``.
"""

from __future__ import annotations

import logging
from typing import Callable, Collection, Mapping, Sequence, Union

import numpy as np

from hybrid_asd.data.clips import Clip
from hybrid_asd.errors import ConfigError, ScoreError
from hybrid_asd.ensemble.znorm import znormalise
from hybrid_asd.registry import Registry
from hybrid_asd.scores import ScoreTable

log = logging.getLogger(__name__)

FUSED_NAME = "fused"
NORMALISERS = ("znorm", "none")

SharedWeights = Mapping[str, float]
PerMachineWeights = Mapping[str, Mapping[str, float]]
Weights = Union[SharedWeights, PerMachineWeights]
References = Mapping[str, Collection[str]]  # detector id -> clip paths of held-out train rows

# A rule maps (matrix (n, d), weights (n, d), group ids (n,)) to fused scores (n,).
Rule = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
RULES: Registry[Rule] = Registry("fusion rule")


@RULES.register("weighted_sum")
def weighted_sum(matrix: np.ndarray, weights: np.ndarray, groups: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", matrix, weights)


@RULES.register("max")
def weighted_max(matrix: np.ndarray, weights: np.ndarray, groups: np.ndarray) -> np.ndarray:
    return np.where(weights > 0, matrix * weights, -np.inf).max(axis=1)


@RULES.register("min")
def weighted_min(matrix: np.ndarray, weights: np.ndarray, groups: np.ndarray) -> np.ndarray:
    return np.where(weights > 0, matrix * weights, np.inf).min(axis=1)


@RULES.register("rank_mean")
def rank_mean(matrix: np.ndarray, weights: np.ndarray, groups: np.ndarray) -> np.ndarray:
    # Lazy: scipy.stats takes about a second to import, and config loading and the CLI's parser
    # import this module for the rule names.
    from scipy.stats import rankdata

    ranks = np.empty_like(matrix, dtype=np.float64)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        if len(rows) == 1:
            ranks[rows] = 0.5  # a lone clip has no rank; the middle of [0, 1] is neutral
            continue
        ranks[rows] = (rankdata(matrix[rows], method="average", axis=0) - 1.0) / (len(rows) - 1)
    return np.einsum("ij,ij->i", ranks, weights) / weights.sum(axis=1)


# --- alignment ---------------------------------------------------------------------------------
def _describe(table: ScoreTable) -> str:
    return f"detector {table.detector!r}" + (f" ({table.source})" if table.source else "")


def align_tables(tables: Sequence[ScoreTable]) -> tuple[list[Clip], np.ndarray]:
    """Rows of all tables aligned by clip path, in the first table's order.

    Returns ``(clips, matrix)`` with ``matrix[i, j]`` the score of ``clips[i]`` by ``tables[j]``.
    Raises ScoreError (naming the detector and its file) for NaN/inf scores, duplicate paths,
    clip lists that differ, or rows whose machine/section/domain/split disagree.
    """
    if not tables:
        raise ScoreError("no score tables to fuse")
    for table in tables:
        table.check_finite()
        _check_unique_paths(table)
    ref = tables[0]
    ref_keys = ref.keys()
    position = {key: i for i, key in enumerate(ref_keys)}
    matrix = np.empty((len(ref), len(tables)))
    matrix[:, 0] = ref.scores
    for j, table in enumerate(tables[1:], start=1):
        keys = table.keys()
        missing = set(ref_keys) - set(keys)
        extra = set(keys) - set(ref_keys)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"lacks {len(missing)} clip(s) of {_describe(ref)}, e.g. {sorted(missing)[0]}")
            if extra:
                parts.append(f"has {len(extra)} clip(s) that {_describe(ref)} lacks, e.g. {sorted(extra)[0]}")
            raise ScoreError(f"{_describe(table)}: clip list differs: " + "; ".join(parts))
        order = np.fromiter((position[k] for k in keys), dtype=np.int64, count=len(keys))
        for row, clip in zip(order, table.clips):
            other = ref.clips[row]
            if (clip.machine, clip.section, clip.domain, clip.split) != (
                other.machine, other.section, other.domain, other.split
            ):
                raise ScoreError(
                    f"{_describe(table)}: clip {clip.path} is {clip.machine}/section_{clip.section:02d}/"
                    f"{clip.domain}/{clip.split} but {other.machine}/section_{other.section:02d}/"
                    f"{other.domain}/{other.split} in {_describe(ref)}"
                )
        matrix[order, j] = table.scores
    return list(ref.clips), matrix


def _check_unique_paths(table: ScoreTable) -> None:
    keys = table.keys()
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        dup = next(k for k in keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ScoreError(f"{_describe(table)}: clip {dup} appears more than once")


# --- weights ------------------------------------------------------------------------------------
def is_per_machine(weights: Weights | None) -> bool:
    """True for ``{machine: {detector: w}}``, False for ``{detector: w}`` (or None/empty)."""
    if not weights:
        return False
    nested = [isinstance(v, Mapping) for v in weights.values()]
    if all(nested):
        return True
    if any(nested):
        raise ConfigError(
            "ensemble.weights mixes {detector: weight} and {machine: {detector: weight}} entries; use one form"
        )
    return False


def weight_matrix(
    clips: Sequence[Clip], tables: Sequence[ScoreTable], weights: Weights | None
) -> np.ndarray:
    """Per-row weights (n_clips, n_detectors) from shared or per-machine weights."""
    detectors = [t.detector for t in tables]
    machines = sorted({c.machine for c in clips})
    if is_per_machine(weights):
        assert weights is not None
        unknown_machines = sorted(set(machines) - set(weights))
        if unknown_machines:
            raise ConfigError(
                f"ensemble.weights: no weights for machine type(s) {unknown_machines}; "
                f"given for {sorted(weights)}"
            )
        per_machine = {m: _weight_vector(tables, weights[m], f"ensemble.weights.{m}") for m in machines}
    else:
        shared = _weight_vector(tables, weights or {}, "ensemble.weights")
        per_machine = {m: shared for m in machines}
    out = np.empty((len(clips), len(detectors)))
    for i, clip in enumerate(clips):
        out[i] = per_machine[clip.machine]
    return out


def _weight_vector(tables: Sequence[ScoreTable], weights: SharedWeights, where: str) -> np.ndarray:
    detectors = [t.detector for t in tables]
    unknown = sorted(set(weights) - set(detectors))
    if unknown:
        files = ", ".join(_describe(t) for t in tables)
        raise ScoreError(
            f"{where} names detector(s) {unknown} that have no score table; the tables given are: {files}"
        )
    vec = np.array([float(weights.get(d, 1.0)) for d in detectors])
    if not np.all(np.isfinite(vec)) or np.any(vec < 0):
        raise ConfigError(f"{where}: weights must be finite and >= 0, got {dict(zip(detectors, vec.tolist()))}")
    if not np.any(vec > 0):
        raise ConfigError(f"{where}: at least one weight must be > 0")
    return vec


# --- fusion -------------------------------------------------------------------------------------
def normalise_tables(
    tables: Sequence[ScoreTable],
    normalise: str = "znorm",
    per_domain: bool = False,
    min_clips: int = 10,
    references: References | None = None,
) -> list[ScoreTable]:
    """Apply the chosen score normalisation to every table (each with its own statistics;
    ``references[detector]`` restricts them to held-out train rows, see ``fit_znorm``)."""
    if normalise not in NORMALISERS:
        raise ConfigError(f"ensemble.normalise: unknown {normalise!r}; known: {', '.join(NORMALISERS)}")
    if normalise == "none":
        return list(tables)
    references = references or {}
    return [
        znormalise(t, per_domain=per_domain, min_clips=min_clips, reference=references.get(t.detector))
        for t in tables
    ]


def section_groups(clips: Sequence[Clip]) -> np.ndarray:
    """Integer id of each clip's (machine, section)."""
    ids: dict[tuple[str, int], int] = {}
    return np.array([ids.setdefault((c.machine, c.section), len(ids)) for c in clips], dtype=np.int64)


def check_detector_names(tables: Sequence[ScoreTable]) -> None:
    names = [t.detector for t in tables]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ScoreError(
            f"detector id(s) {dups} given more than once; concatenate tables of one detector "
            "(hybrid_asd.ensemble.stage.read_score_tables) before fusing"
        )


def fuse(
    tables: Sequence[ScoreTable],
    rule: str = "weighted_sum",
    weights: Weights | None = None,
    normalise: str = "znorm",
    per_domain: bool = False,
    min_clips: int = 10,
    references: References | None = None,
) -> ScoreTable:
    """Fuse score tables of different detectors over the same clips into one table ("fused").

    Each table is normalised with its own statistics (``normalise``; ``references`` as in
    :func:`normalise_tables`), the tables are aligned by clip path (:func:`align_tables`) and
    combined with ``rule`` and ``weights``.
    """
    tables = list(tables)
    check_detector_names(tables)
    fn = RULES.get(rule)  # fail on an unknown rule before any work
    # Check clip lists, NaNs and weights on the tables as read, so errors name the files.
    clips, _ = align_tables(tables)
    row_weights = weight_matrix(clips, tables, weights)
    normed = normalise_tables(tables, normalise, per_domain, min_clips, references)
    clips, matrix = align_tables(normed)
    fused = fn(matrix, row_weights, section_groups(clips))
    log.info("fused %d detector(s) over %d clip(s) with rule %r", len(tables), len(clips), rule)
    return ScoreTable(FUSED_NAME, clips, fused)
