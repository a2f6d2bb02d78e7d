"""Weight tuning: the fusion weights that maximise the official score on labelled sections.

The objective is ``Results.official_score`` (hybrid_asd.evaluation.metrics) of the fused
scores of the labelled test clips (``split == "test"``, label normal/anomaly: development
sections). Weights live on the simplex (non-negative, summing to one):

- ``grid``: every point of the simplex grid with step ``grid_step`` (286 points for 4 detectors
  at 0.1). Ties are broken towards the most even weights (highest entropy), the least committal
  choice. Used by ``method="auto"`` for up to 4 detectors.
- ``optimiser``: ``scipy.optimize.differential_evolution`` (seeded, no gradient polish: the
  objective is piecewise constant in the weights) over x in [0, 1]^d with weights x / sum(x);
  equal weights are part of the initial population. Used by ``auto`` beyond 4 detectors.

Leave-one-section-out (LOSO): for each labelled (machine, section), the weights are tuned on
the other sections and scored on the held-out one. The official score is a harmonic mean of
per-(machine, section, domain) AUC and pAUC values, so the score of any set of sections is the
harmonic mean of their values; the grid method thus evaluates each grid point once and reuses
the per-section values for every fold (exact, and honest because the grid does not depend on
the data). The optimiser is rerun for every fold. The report compares the pooled held-out score
with the in-sample tuned score and the equal-weight score on the same sections: a tuned score
well above its LOSO estimate means the weights fit the development set rather than the task.

With ``per_machine=True`` each machine type gets its own weights, tuned on its own sections
(the official score's harmonic mean decomposes, so this maximises the overall score too) and
LOSO folds only use the other sections of the same machine type.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from hybrid_asd.errors import ConfigError, ScoreError
from hybrid_asd.ensemble.settings import TUNE_METHODS, TuneSettings
from hybrid_asd.ensemble.fusion import (
    RULES,
    References,
    align_tables,
    check_detector_names,
    normalise_tables,
    section_groups,
)
from hybrid_asd.evaluation.metrics import LabelledScores, Results, evaluate_labelled, harmonic_mean
from hybrid_asd.evaluation.settings import SECTION_PAUC_PROTOCOLS
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_write_text

log = logging.getLogger(__name__)

METHODS = TUNE_METHODS
MAX_GRID_DETECTORS = 4  # "auto" searches the grid up to this many detectors, else the optimiser
_DEFAULT = TuneSettings()
Section = tuple[str, int]  # (machine, section)
TIE_TOL = 1e-12


# --- objective ----------------------------------------------------------------------------------
class Evaluator:
    """Per-section official-score values of fused scores over a fixed set of aligned clips.

    Built once from the aligned clip list; ``section_values(fused)`` evaluates the labelled test
    rows (optionally only some sections) with ``evaluate_labelled`` and returns, per
    (machine, section), the AUC/pAUC values that enter the official score.
    """

    def __init__(self, clips: Sequence, protocol: str = "dcase2021", max_fpr: float = 0.1):
        self.protocol = protocol
        self.max_fpr = max_fpr
        units: dict[tuple[str, int, str], list[int]] = {}
        for i, clip in enumerate(clips):
            if clip.split == "test" and clip.label in ("normal", "anomaly"):
                units.setdefault((clip.machine, clip.section, clip.domain), []).append(i)
        if not units:
            raise ScoreError(
                "no labelled test clips (split=test, label normal/anomaly): tuning needs development "
                "sections with ground truth"
            )
        self._units: dict[tuple[str, int, str], tuple[np.ndarray, tuple[str, ...], np.ndarray]] = {}
        for key, rows in sorted(units.items()):
            # LabelledScores are sorted by clip name (as the official evaluator); sort once here.
            rows.sort(key=lambda i: clips[i].name)
            idx = np.asarray(rows)
            names = tuple(clips[i].name for i in rows)
            labels = np.asarray([int(clips[i].is_anomaly) for i in rows], dtype=np.int64)
            self._units[key] = (idx, names, labels)
        self.sections: list[Section] = sorted({(m, s) for m, s, _ in self._units})
        self.n_calls = 0

    def results(self, fused: np.ndarray, sections: Sequence[Section] | None = None) -> Results:
        wanted = None if sections is None else set(sections)
        groups = {
            key: LabelledScores(names, labels, fused[idx])
            for key, (idx, names, labels) in self._units.items()
            if wanted is None or key[:2] in wanted
        }
        self.n_calls += 1
        return evaluate_labelled(groups, self.protocol, self.max_fpr)

    def section_values(self, fused: np.ndarray, sections: Sequence[Section] | None = None
                       ) -> dict[Section, list[float]]:
        return values_by_section(self.results(fused, sections))


def values_by_section(results: Results) -> dict[Section, list[float]]:
    """The AUC and pAUC values of each (machine, section) that enter ``results.official_score``.

    dcase2021: AUC and pAUC of every domain; dcase2022: AUC of every domain and the section's one
    pAUC. ``harmonic_mean`` of all values is the official score.
    """
    out: dict[Section, list[float]] = {}
    for row in results.rows:
        out.setdefault((row.machine, row.section), []).append(row.auc)
        if results.protocol not in SECTION_PAUC_PROTOCOLS:
            out[(row.machine, row.section)].append(row.pauc)
    if results.protocol in SECTION_PAUC_PROTOCOLS:
        for row in {(r.machine, r.section): r for r in results.rows}.values():
            out[(row.machine, row.section)].append(row.pauc)
    return out


def score_of(values: dict[Section, list[float]], sections: Sequence[Section]) -> float:
    """Official score (harmonic mean) over the given sections' values."""
    return harmonic_mean([v for s in sections for v in values[s]])


# --- candidate weights -------------------------------------------------------------------------
def simplex_grid(n_detectors: int, step: float) -> np.ndarray:
    """All weight vectors with entries in {0, step, 2 step, ..., 1} summing to 1."""
    if not 0 < step <= 1:
        raise ConfigError(f"grid_step must be in (0, 1], got {step}")
    k = round(1.0 / step)
    if abs(k * step - 1.0) > 1e-9:
        raise ConfigError(f"grid_step {step}: 1 / grid_step must be an integer (e.g. 0.1, 0.05, 0.25)")
    # Stars and bars: choose the d-1 bar positions among k + d - 1 slots.
    points = []
    for bars in itertools.combinations(range(k + n_detectors - 1), n_detectors - 1):
        edges = (-1, *bars, k + n_detectors - 1)
        points.append([edges[i + 1] - edges[i] - 1 for i in range(n_detectors)])
    return np.asarray(points, dtype=np.float64) / k


def entropy(w: np.ndarray) -> float:
    w = w[w > 0]
    return float(-(w * np.log(w)).sum())


def best_candidate(scores: np.ndarray, candidates: np.ndarray) -> int:
    """Index of the highest score; ties (within TIE_TOL) go to the most even weights."""
    top = np.flatnonzero(scores >= scores.max() - TIE_TOL)
    return int(max(top, key=lambda i: (entropy(candidates[i]), -i)))


# --- results ------------------------------------------------------------------------------------
@dataclass
class LosoFold:
    """One leave-one-section-out fold: weights tuned without ``(machine, section)``."""

    machine: str
    section: int
    weights: dict[str, float]
    held_out_score: float  # official score of the held-out section with the fold's weights
    in_sample_score: float  # ... with the weights tuned on all sections (including this one)
    equal_weight_score: float  # ... with equal weights


@dataclass
class TuneResult:
    """Outcome of :func:`tune_weights`; ``weights`` is ``{detector: w}`` or ``{machine: {detector: w}}``."""

    weights: dict[str, Any]
    score: float  # in-sample official score of the tuned weights
    equal_weight_score: float
    single_scores: dict[str, float]
    loso: list[LosoFold] = field(default_factory=list)
    loso_score: float | None = None  # pooled held-out official score over the LOSO folds
    loso_in_sample_score: float | None = None  # tuned weights, same sections (pooled)
    loso_equal_score: float | None = None  # equal weights, same sections (pooled)
    rule: str = "weighted_sum"
    normalise: str = "znorm"
    per_domain: bool = False
    min_clips: int = 10
    protocol: str = "dcase2021"
    method: str = "grid"
    grid_step: float = 0.1
    per_machine: bool = False
    detectors: list[str] = field(default_factory=list)
    n_candidates: int = 0
    skipped_folds: list[str] = field(default_factory=list)

    @property
    def loso_mean_held_out(self) -> float | None:
        return float(np.mean([f.held_out_score for f in self.loso])) if self.loso else None

    @property
    def loso_mean_in_sample(self) -> float | None:
        return float(np.mean([f.in_sample_score for f in self.loso])) if self.loso else None

    def ensemble_section(self) -> dict[str, Any]:
        """The ``ensemble`` config section that reproduces this fusion."""
        return ensemble_section(self.rule, self.weights, self.normalise, self.per_domain, self.detectors,
                                self.min_clips)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self, path: str | Path) -> None:
        """Write ``ensemble: {rule, weights, ...}`` (a config fragment for load_config), atomically."""
        comment = [
            f"Weights tuned by 'hybrid-asd fuse --tune' ({self.method}) for the {self.protocol} official score",
            f"on the labelled development sections: tuned {self.score:.4f} (in-sample), "
            f"equal weights {self.equal_weight_score:.4f}",
        ]
        if self.loso_score is not None:
            comment.append(
                f"leave-one-section-out: held-out {self.loso_score:.4f} vs in-sample "
                f"{self.loso_in_sample_score:.4f} on the same {len(self.loso)} section(s)"
            )
        write_weights_yaml(path, self.ensemble_section(), comment)

    def format(self) -> str:
        """A readable report."""
        lines = [
            f"weight tuning: rule {self.rule}, normalise {self.normalise}"
            f"{' per domain' if self.per_domain else ''}, protocol {self.protocol}, method {self.method}"
            + (f" (step {self.grid_step})" if self.method == "grid" else "")
            + f", {self.n_candidates} candidate(s) evaluated",
            "",
            "official score on the labelled development sections:",
        ]
        for det, s in self.single_scores.items():
            lines.append(f"  {det:<24}{s:.4f}   (alone)")
        lines.append(f"  {'equal weights':<24}{self.equal_weight_score:.4f}")
        lines.append(f"  {'tuned weights':<24}{self.score:.4f}   (in-sample)")
        lines += ["", "tuned weights:"]
        if self.per_machine:
            for machine, w in self.weights.items():
                lines.append(f"  {machine}: " + ", ".join(f"{d} {v:.3f}" for d, v in w.items()))
        else:
            lines.append("  " + ", ".join(f"{d} {v:.3f}" for d, v in self.weights.items()))
        lines += ["", "leave-one-section-out (weights tuned on the other sections):"]
        if not self.loso:
            lines.append("  not computed" + (f" ({'; '.join(self.skipped_folds)})" if self.skipped_folds else ""))
            return "\n".join(lines)
        lines.append(f"  {'machine':<14}{'section':>8}{'held-out':>10}{'in-sample':>11}{'equal':>8}   fold weights")
        for f in self.loso:
            w = ", ".join(f"{d} {v:.2f}" for d, v in f.weights.items())
            lines.append(
                f"  {f.machine:<14}{f.section:>8}{f.held_out_score:>10.4f}{f.in_sample_score:>11.4f}"
                f"{f.equal_weight_score:>8.4f}   {w}"
            )
        lines.append(
            f"  {'mean':<22}{self.loso_mean_held_out:>10.4f}{self.loso_mean_in_sample:>11.4f}"
            f"{np.mean([f.equal_weight_score for f in self.loso]):>8.4f}"
        )
        lines.append(
            f"  pooled official score: held-out {self.loso_score:.4f}, in-sample {self.loso_in_sample_score:.4f}, "
            f"equal weights {self.loso_equal_score:.4f}"
        )
        gap = (self.loso_in_sample_score or 0.0) - (self.loso_score or 0.0)
        lines.append(f"  optimism (in-sample - held-out): {gap:+.4f}")
        for note in self.skipped_folds:
            lines.append(f"  skipped: {note}")
        return "\n".join(lines)


def ensemble_section(rule: str, weights: dict[str, Any] | None, normalise: str, per_domain: bool,
                     members: Sequence[str] | None, min_clips: int = 10) -> dict[str, Any]:
    return {
        "members": list(members) if members else None,
        "normalise": normalise,
        "per_domain": bool(per_domain),
        "min_clips": int(min_clips),
        "rule": rule,
        "weights": _plain(weights or {}),
    }


def write_weights_yaml(path: str | Path, section: dict[str, Any], comment: Sequence[str] = ()) -> None:
    """Write ``{"ensemble": section}`` as YAML with ``#`` comment lines on top, atomically."""
    head = "".join(f"# {line}\n" for line in comment)
    atomic_write_text(path, head + yaml.safe_dump({"ensemble": section}, sort_keys=False))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return round(float(obj), 6)


# --- search -------------------------------------------------------------------------------------
@dataclass
class _Problem:
    """Normalised, aligned scores and the objective for one group of sections."""

    matrix: np.ndarray
    groups: np.ndarray
    rule: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    evaluator: Evaluator
    # Memo of evaluated (weights, sections): grid vertices and equal weights recur in the report.
    _memo: dict[tuple, dict[Section, list[float]]] = field(default_factory=dict)

    def fused(self, w: np.ndarray) -> np.ndarray:
        return self.rule(self.matrix, np.broadcast_to(w, self.matrix.shape), self.groups)

    def values(self, w: np.ndarray, sections: Sequence[Section]) -> dict[Section, list[float]]:
        key = (tuple(np.round(w, 12)), tuple(sections))
        if key not in self._memo:
            self._memo[key] = self.evaluator.section_values(self.fused(w), sections)
        return self._memo[key]


def _search_grid(problem: _Problem, sections: list[Section], candidates: np.ndarray,
                 folds: list[Section]) -> tuple[np.ndarray, float, dict[Section, np.ndarray], int]:
    """Best grid point on ``sections`` and the best point for each fold (held-out section left out)."""
    values = [problem.values(w, sections) for w in candidates]
    total = np.array([score_of(v, sections) for v in values])
    best = candidates[best_candidate(total, candidates)]
    fold_best = {}
    for held in folds:
        rest = [s for s in sections if s != held]
        scores = np.array([score_of(v, rest) for v in values])
        fold_best[held] = candidates[best_candidate(scores, candidates)]
    return best, float(total.max()), fold_best, len(candidates)


def _optimise(problem: _Problem, sections: list[Section], n_det: int, seed: int, maxiter: int,
              popsize: int) -> tuple[np.ndarray, float, int]:
    # lazy: scipy.optimize loads in a second and only the optimiser needs it
    from scipy.optimize import differential_evolution
    def to_weights(x: np.ndarray) -> np.ndarray:
        total = x.sum()
        return x / total if total > 0 else np.full(n_det, 1.0 / n_det)

    def objective(x: np.ndarray) -> float:
        return -score_of(problem.values(to_weights(x), sections), sections)

    start = problem.evaluator.n_calls
    res = differential_evolution(
        objective, bounds=[(0.0, 1.0)] * n_det, seed=seed, maxiter=maxiter, popsize=popsize, tol=1e-8,
        polish=False, x0=np.full(n_det, 0.5), updating="immediate", workers=1,
    )
    return to_weights(res.x), float(-res.fun), problem.evaluator.n_calls - start


def _search(problem: _Problem, sections: list[Section], method: str, candidates: np.ndarray | None,
            folds: list[Section], n_det: int, seed: int, maxiter: int, popsize: int
            ) -> tuple[np.ndarray, float, dict[Section, np.ndarray], int]:
    if method == "grid":
        assert candidates is not None
        return _search_grid(problem, sections, candidates, folds)
    best, score, n = _optimise(problem, sections, n_det, seed, maxiter, popsize)
    fold_best = {}
    for held in folds:
        rest = [s for s in sections if s != held]
        fold_best[held], _, n_fold = _optimise(problem, rest, n_det, seed, maxiter, popsize)
        n += n_fold
    return best, score, fold_best, n


def tune_weights(
    tables: Sequence[ScoreTable],
    protocol: str = "dcase2021",
    method: str = _DEFAULT.method,
    grid_step: float = _DEFAULT.grid_step,
    per_machine: bool = _DEFAULT.per_machine,
    seed: int = 0,
    *,
    rule: str = "weighted_sum",
    normalise: str = "znorm",
    per_domain: bool = False,
    min_clips: int = 10,
    references: References | None = None,
    loso: bool = _DEFAULT.loso,
    max_fpr: float = 0.1,
    maxiter: int = _DEFAULT.maxiter,
    popsize: int = _DEFAULT.popsize,
) -> TuneResult:
    """Search fusion weights that maximise the official score of the fused labelled test rows.

    See the module docstring for the methods and the leave-one-section-out estimates.
    """
    tables = list(tables)
    check_detector_names(tables)
    if method not in METHODS:
        raise ConfigError(f"tuning method {method!r} unknown; known: {', '.join(METHODS)}")
    detectors = [t.detector for t in tables]
    n_det = len(detectors)
    resolved = method if method != "auto" else ("grid" if n_det <= MAX_GRID_DETECTORS else "optimiser")
    candidates = simplex_grid(n_det, grid_step) if resolved == "grid" else None
    fn = RULES.get(rule)
    align_tables(tables)  # clear errors on the tables as read
    clips, matrix = align_tables(normalise_tables(tables, normalise, per_domain, min_clips, references))
    problem = _Problem(matrix, section_groups(clips), fn, Evaluator(clips, protocol, max_fpr))
    sections = problem.evaluator.sections
    machines = sorted({m for m, _ in sections}) if per_machine else [None]
    equal = np.full(n_det, 1.0 / n_det)

    tuned: dict[str | None, np.ndarray] = {}
    fold_weights: dict[Section, np.ndarray] = {}
    skipped: list[str] = []
    n_candidates = 0
    for machine in machines:
        secs = [s for s in sections if machine is None or s[0] == machine]
        folds = secs if loso and len(secs) > 1 else []
        if loso and len(secs) == 1:
            skipped.append(f"{secs[0][0]} section {secs[0][1]:02d}: no other section to tune on")
        tuned[machine], _, fb, n = _search(
            problem, secs, resolved, candidates, folds, n_det, seed, maxiter, popsize
        )
        # Round as written to weights.yaml, so the reported scores are those of the written weights.
        tuned[machine] = np.round(tuned[machine], 6)
        fold_weights.update(fb)
        n_candidates += n
        log.info("tuned %s: %s", machine or "shared weights",
                 {d: round(float(w), 3) for d, w in zip(detectors, tuned[machine])})

    # In-sample, equal-weight and single-detector scores over all sections.
    fused_tuned = np.empty(len(clips))
    for machine in machines:
        rows = np.array([machine is None or c.machine == machine for c in clips])
        fused_tuned[rows] = problem.fused(tuned[machine])[rows]
    tuned_values = problem.evaluator.section_values(fused_tuned)
    equal_values = problem.values(equal, sections)
    single = {d: score_of(problem.values(np.eye(n_det)[j], sections), sections) for j, d in enumerate(detectors)}

    result = TuneResult(
        weights=_weights_dict(tuned, detectors, per_machine),
        score=score_of(tuned_values, sections),
        equal_weight_score=score_of(equal_values, sections),
        single_scores=single,
        rule=rule, normalise=normalise, per_domain=per_domain, min_clips=min_clips, protocol=protocol,
        method=resolved, grid_step=grid_step, per_machine=per_machine, detectors=detectors,
        n_candidates=n_candidates, skipped_folds=skipped,
    )
    if fold_weights:
        _add_loso(result, problem, fold_weights, tuned_values, equal_values, detectors)
    elif not loso:
        result.skipped_folds.append("LOSO disabled")
    return result


def _add_loso(result: TuneResult, problem: _Problem, fold_weights: dict[Section, np.ndarray],
              tuned_values: dict[Section, list[float]], equal_values: dict[Section, list[float]],
              detectors: list[str]) -> None:
    held_values: dict[Section, list[float]] = {}
    for held, w in sorted(fold_weights.items()):
        held_values[held] = problem.values(w, [held])[held]
        result.loso.append(
            LosoFold(
                machine=held[0], section=held[1],
                weights={d: round(float(v), 6) for d, v in zip(detectors, w)},
                held_out_score=harmonic_mean(held_values[held]),
                in_sample_score=harmonic_mean(tuned_values[held]),
                equal_weight_score=harmonic_mean(equal_values[held]),
            )
        )
    folds = sorted(fold_weights)
    result.loso_score = score_of(held_values, folds)
    result.loso_in_sample_score = score_of(tuned_values, folds)
    result.loso_equal_score = score_of(equal_values, folds)


def _weights_dict(tuned: dict[str | None, np.ndarray], detectors: list[str], per_machine: bool) -> dict[str, Any]:
    def one(w: np.ndarray) -> dict[str, float]:
        return {d: round(float(v), 6) for d, v in zip(detectors, w)}

    if per_machine:
        return {str(m): one(w) for m, w in tuned.items()}
    return one(tuned[None])


__all__ = [
    "Evaluator", "LosoFold", "TuneResult", "ensemble_section", "simplex_grid", "tune_weights",
    "values_by_section", "write_weights_yaml",
]
