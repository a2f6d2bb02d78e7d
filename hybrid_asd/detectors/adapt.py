"""Few-shot target-domain adaptation for every detector, in one place.

DCASE 2021 Task 2 gives ~1000 normal source clips but only 3 target clips per section.
:class:`DomainAdaptiveDetector` wraps any registered detector:

* ``mode="none"``: one model on the source rows only (no adaptation).
* ``mode="pooled"``: one model on all training rows (the official baselines' way).
* ``mode="domain_min"``: a source model on the source rows and a target model on the target rows
  (optionally enlarged with ``smote`` interpolated points, see :func:`smote_interpolate`). Every
  row is scored by both models; each model's scores are normalised by statistics of its own
  training data, and the final score is the minimum over the domains. The test clip's domain is
  never used (``decision_function`` takes no domain): a row that fits either domain scores low.
* ``mode="mean_shift"``: one model on the source rows; the target domain reuses it, moved onto the
  target clips: a row ``x`` gets ``min(s(x), s(x + mu_source - mu_target))``, ``s`` the source
  model's score and ``mu`` the mean training row of each domain (per condition, i.e. section, when
  one conditional model serves several sections). Three clips estimate a mean far better than a
  covariance or a density, and both terms come from one model on one scale, so no normalisation
  is needed. Written for the density models (Mahalanobis, GMM, flow), whose separate 3-clip target
  models make ``domain_min`` worse than no adaptation at all (docs/results.md); it assumes the
  shift moves the normal cloud more than it reshapes it.

Normalisation (``normalise``):

* ``"oof"``: z-score with the mean and standard deviation of **out-of-fold** scores of the
  domain's own training rows: its clips (``groups``) are split into ``n_splits`` folds (with 3
  target clips: leave-one-clip-out), a model is fitted without each fold and scores it (SMOTE is
  redone inside each fold from that fold's training rows). In-sample scores would be biased
  low and differently so per domain (a kNN bank scores its own rows 0; a model of 3 clips
  over-fits them far more than one of 1000), so only held-out scores describe how the model
  scores *new* normal rows. Costs ``n_splits`` extra fits per domain.
* ``"train"``: z-score with in-sample score statistics (cheap; for models that do not memorise
  their rows, e.g. an AE with a small bottleneck; never for kNN).
* ``"none"``: raw scores. Sensible for kNN: distances in one embedding space are comparable
  across domains, and with k=1 ``domain_min`` then equals a kNN on the pooled bank.
* ``"auto"`` (default): ``"none"`` for ``knn``, ``"oof"`` for the others.

Input standardisation (``standardise=True``): every feature is centred and scaled by the mean and
standard deviation of all training rows (both domains) before any model sees them, and test rows
the same way; the two vectors are saved with the detector. Log-mel statistics (means and standard
deviations of 128 bands in dB) differ in scale by an order of magnitude between features, which a
Euclidean kNN or a shrunk covariance otherwise weighs accordingly.

Rows may be clip embeddings or frames (many rows per clip): pass ``groups`` (clip ids) so that
the folds keep the rows of a clip together. :func:`cross_fit_scores` gives out-of-fold scores of
all training rows for the ensembler's z-normalisation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_asd.detectors.base import (
    NotFittedError, check_condition, check_matrix, deprecated_score_samples, warn,
)
from hybrid_asd.detectors.persistence import (
    FORMAT_VERSION, PARAMS_FILE, load_detector, read_saved_params, register_loader,
)
from hybrid_asd.detectors.registry import build_detector
from hybrid_asd.detectors.settings import MODES, NORMALISE, AdaptationSettings
from hybrid_asd.errors import ConfigError, DataError
from hybrid_asd.utils import atomic_save_npy, atomic_write_json

log = logging.getLogger(__name__)

NAME = "domain_adaptive"
DOMAINS = ("source", "target")
STANDARDISE_MEAN, STANDARDISE_SCALE = "input_mean.npy", "input_scale.npy"
_DEFAULT = AdaptationSettings()  # the config's adaptation defaults are the wrapper's


# --------------------------------------------------------------------------- small helpers


def check_domains(domains: Any, n_rows: int, *, who: str) -> np.ndarray:
    """Per-row domain labels as a str array of "source"/"target"."""
    arr = np.asarray(domains)
    if arr.ndim != 1 or len(arr) != n_rows:
        raise DataError(f"{who}: domains must be 1-D with one label per row ({n_rows}), got shape {arr.shape}")
    arr = arr.astype(str)
    bad = sorted(set(np.unique(arr)) - set(DOMAINS))
    if bad:
        raise DataError(f"{who}: unknown domain label(s) {bad}; expected 'source' or 'target'")
    return arr


def check_groups(groups: Any, n_rows: int, *, who: str) -> np.ndarray:
    """Per-row group (clip) ids; None means every row is its own group."""
    if groups is None:
        return np.arange(n_rows)
    arr = np.asarray(groups)
    if arr.ndim != 1 or len(arr) != n_rows:
        raise DataError(f"{who}: groups must be 1-D with one clip id per row ({n_rows}), got shape {arr.shape}")
    return arr


def _take(arr: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    return None if arr is None else arr[mask]


def smote_interpolate(
    X: np.ndarray, n_new: int, seed: int = 0, condition: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``n_new`` SMOTE-style points ``a + u (b - a)``, ``u ~ U(0, 1)``, between random pairs of rows.

    Pairs are two distinct rows drawn at random (seeded), from the same condition group when
    ``condition`` is given (a group of one row yields copies of it). Classic SMOTE pairs a row
    with one of its k nearest neighbours; with the 3 clips of a target domain every pair is a
    near neighbour anyway, so pairs are drawn uniformly. Returns the new rows and their condition.
    """
    X = np.asarray(X)
    n = len(X)
    if n_new <= 0 or n == 0:
        return np.zeros((0, X.shape[1]), dtype=X.dtype), None if condition is None else condition[:0]
    if n == 1:
        warn("smote: a single row cannot be interpolated; the new points are copies of it")
    rng = np.random.default_rng(seed)
    first = rng.integers(n, size=n_new)
    if condition is None:
        # an offset in 1..n-1 guarantees a different row (when there are two or more)
        second = (first + rng.integers(1, max(n, 2), size=n_new)) % n
    else:
        second = np.empty_like(first)
        for value in np.unique(condition[first]):
            members = np.flatnonzero(condition == value)
            picks = np.flatnonzero(condition[first] == value)
            if len(members) == 1:
                second[picks] = members[0]
                continue
            pos = np.searchsorted(members, first[picks])  # position of the first row in members
            offsets = rng.integers(1, len(members), size=len(picks))
            second[picks] = members[(pos + offsets) % len(members)]
    u = rng.random(n_new)[:, None]
    new = X[first] + u * (X[second] - X[first])
    return new.astype(X.dtype, copy=False), None if condition is None else condition[first]


def _condition_keys(n_rows: int, cond: np.ndarray | None) -> np.ndarray:
    """Per-row key of the mean shifts: the condition id as text, or "all" without conditions."""
    return np.full(n_rows, "all") if cond is None else cond.astype(str)


def target_mean_shifts(X: np.ndarray, domains: np.ndarray, cond: np.ndarray | None) -> dict[str, np.ndarray]:
    """``mean(source rows) - mean(target rows)`` per condition ("all" without conditions); a
    condition without rows of both domains gets no entry."""
    keys = _condition_keys(len(X), cond)
    shifts = {}
    for key in np.unique(keys):
        source = (keys == key) & (domains == "source")
        target = (keys == key) & (domains == "target")
        if source.any() and target.any():
            shifts[str(key)] = X[source].mean(axis=0, dtype=np.float64) - X[target].mean(axis=0, dtype=np.float64)
    return shifts


def assign_group_folds(
    groups: np.ndarray, n_splits: int, seed: int = 0, strata: np.ndarray | None = None
) -> np.ndarray:
    """Fold index per row: whole groups go to one fold; groups are shuffled (seeded) and each
    stratum (e.g. domain) is dealt round-robin, so 3 target clips land in 3 different folds.

    Hand-written rather than sklearn's StratifiedGroupKFold, which warns and balances poorly
    when a stratum has fewer groups than folds (the 3 target clips).
    """
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(groups, return_inverse=True)
    if strata is None:
        group_stratum = np.zeros(len(uniq), dtype=int)
    else:
        group_stratum_raw = np.empty(len(uniq), dtype=object)
        group_stratum_raw[inverse] = strata
        # a group must sit in one stratum (a clip has one domain)
        mixed = [g for i, g in enumerate(uniq) if len(set(strata[inverse == i])) > 1]
        if mixed:
            raise DataError(f"group(s) {mixed[:5]} have rows in more than one domain")
        _, group_stratum = np.unique(group_stratum_raw.astype(str), return_inverse=True)
    group_fold = np.empty(len(uniq), dtype=int)
    offset = 0
    for stratum in np.unique(group_stratum):
        members = rng.permutation(np.flatnonzero(group_stratum == stratum))
        group_fold[members] = (offset + np.arange(len(members))) % n_splits
        offset += len(members)
    return group_fold[inverse]


def fit_standardisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and scale of the training rows (scikit-learn's ``StandardScaler``: a constant
    feature gets scale 1)."""
    # Lazy: scikit-learn takes a second to import; configs that never standardise do not need it.
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X)
    return scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)


def load_array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A saved ``.npy`` vector of a fitted detector; a DataError naming the file when it is corrupt."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: unreadable saved array ({exc}); refit the detector ('fit' stage)") from None
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: saved array has shape {arr.shape} (expected {shape}) or non-finite values; "
                        "refit the detector ('fit' stage)")
    return arr


# --------------------------------------------------------------------------- the wrapper


@register_loader(NAME)
class DomainAdaptiveDetector:
    """Source/target models of one detector with domain-min fusion; see the module docstring.

    ``name``/``conf``: the registered detector and its parameters; ``mode``: "none" | "pooled" | "mean_shift" |
    "domain_min"; ``smote``: extra interpolated target points (domain_min only); ``seed``;
    ``normalise``: "auto" | "none" | "oof" | "train"; ``n_splits``: folds for "oof".
    """

    def __init__(
        self,
        name: str,
        conf: dict[str, Any] | None = None,
        mode: str = _DEFAULT.mode,
        smote: int = _DEFAULT.smote,
        seed: int = 0,
        normalise: str = _DEFAULT.normalise,
        n_splits: int = _DEFAULT.n_splits,
        standardise: bool = False,
    ):
        self.name = name
        self.conf = conf
        self.mode = mode
        self.smote = smote
        self.seed = seed
        self.normalise = normalise
        self.n_splits = n_splits
        self.standardise = standardise

    # ---- parameters
    def get_params(self) -> dict[str, Any]:
        return {
            "name": self.name, "conf": dict(self.conf or {}), "mode": self.mode, "smote": self.smote,
            "seed": self.seed, "normalise": self.normalise, "n_splits": self.n_splits,
            "standardise": bool(self.standardise),
        }

    def _who(self) -> str:
        return f"domain-adaptive {self.name!r} ({self.mode})"

    def _validate_params(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"{self._who()}: mode={self.mode!r} is invalid; expected one of {MODES}")
        if self.normalise not in NORMALISE:
            raise ConfigError(f"{self._who()}: normalise={self.normalise!r} is invalid; expected one of {NORMALISE}")
        if not isinstance(self.smote, int) or self.smote < 0:
            raise ConfigError(f"{self._who()}: smote={self.smote!r} is invalid; expected an int >= 0")
        if not isinstance(self.n_splits, int) or self.n_splits < 2:
            raise ConfigError(f"{self._who()}: n_splits={self.n_splits!r} is invalid; expected an int >= 2")
        build_detector(self.name, self.conf, seed=self.seed)  # unknown name / keys / values

    def resolved_normalise(self) -> str:
        if self.mode != "domain_min":
            return "none"  # one model: nothing to balance
        if self.normalise == "auto":
            return "none" if self.name == "knn" else "oof"
        return self.normalise

    # ---- fitting
    def _fit_model(self, X: np.ndarray, condition: np.ndarray | None, smote: int) -> Any:
        if smote:
            extra, extra_cond = smote_interpolate(X, smote, seed=self.seed, condition=condition)
            X = np.concatenate([X, extra])
            condition = None if condition is None else np.concatenate([condition, extra_cond])
        return build_detector(self.name, self.conf, seed=self.seed).fit(X, condition)

    def fit(self, X: Any, domains: Any, condition: Any = None, groups: Any = None) -> "DomainAdaptiveDetector":
        """Fit on training rows with their ``domains`` ("source"/"target") and optional clip ``groups``."""
        self._validate_params()
        who = self._who()
        X = check_matrix(X, who=who)
        domains = check_domains(domains, len(X), who=who)
        cond = check_condition(condition, len(X), who=who)
        groups = check_groups(groups, len(X), who=who)
        self.input_mean_, self.input_scale_ = fit_standardisation(X) if self.standardise else (None, None)
        X = self._standardised(X)
        normalise = self.resolved_normalise()
        models: dict[str, Any] = {}
        stats: dict[str, list[float]] = {}
        shifts: dict[str, np.ndarray] = {}
        if self.mode == "pooled":
            models["pooled"] = self._fit_model(X, cond, 0)
        else:
            wanted = DOMAINS if self.mode == "domain_min" else ("source",)
            for domain in wanted:
                mask = domains == domain
                if not mask.any():
                    log.info("%s: no %s rows; no %s model", who, domain, domain)
                    continue
                smote = self.smote if domain == "target" else 0
                Xd, cd, gd = X[mask], _take(cond, mask), groups[mask]
                models[domain] = self._fit_model(Xd, cd, smote)
                if normalise != "none":
                    stats[domain] = self._statistics(models[domain], Xd, cd, gd, smote, normalise, domain)
        if not models:
            raise DataError(f"{who}: no source rows to fit on")
        if self.mode == "mean_shift":
            shifts = target_mean_shifts(X, domains, cond)
            if not shifts:
                log.info("%s: no target rows; the source model alone scores", who)
        self.models_ = models
        self.stats_ = stats
        self.shifts_ = shifts
        self.normalise_ = normalise
        self.n_features_in_ = int(X.shape[1])
        return self

    def _standardised(self, X: np.ndarray) -> np.ndarray:
        if getattr(self, "input_mean_", None) is None:
            return X
        return ((X - self.input_mean_) / self.input_scale_).astype(X.dtype, copy=False)

    def _statistics(
        self, model: Any, X: np.ndarray, cond: np.ndarray | None, groups: np.ndarray,
        smote: int, normalise: str, domain: str,
    ) -> list[float]:
        """[mean, std] of the domain's reference scores (out-of-fold or in-sample)."""
        n_groups = len(np.unique(groups))
        if normalise == "oof" and n_groups >= 2:
            scores = self._out_of_fold(X, cond, groups, smote, min(self.n_splits, n_groups))
        else:
            if normalise == "oof":
                warn(f"{self._who()}: one {domain} clip only; normalising with in-sample scores")
            scores = model.decision_function(X, cond)
        mean, std = float(np.mean(scores)), float(np.std(scores))
        if not std > 1e-12 * max(1.0, abs(mean)):
            warn(f"{self._who()}: {domain} reference scores have zero spread; using std 1")
            std = 1.0
        return [mean, std]

    def _out_of_fold(
        self, X: np.ndarray, cond: np.ndarray | None, groups: np.ndarray, smote: int, n_splits: int
    ) -> np.ndarray:
        folds = assign_group_folds(groups, n_splits, seed=self.seed)
        out = np.empty(len(X))
        for fold in range(n_splits):
            held = folds == fold
            model = self._fit_model(X[~held], _take(cond, ~held), smote)
            out[held] = model.decision_function(X[held], _take(cond, held))
        return out

    # ---- scoring
    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise NotFittedError(f"{self._who()} is not fitted yet: call fit(X, domains) before scoring or saving")

    def score_domains(self, X: Any, condition: Any = None) -> dict[str, np.ndarray]:
        """Per-model normalised scores (``"source"``, ``"target"`` or ``"pooled"``) of every row."""
        self._check_fitted()
        X = self._standardised(check_matrix(X, who=self._who(), n_features=self.n_features_in_))
        cond = check_condition(condition, len(X), who=self._who())
        if self.mode == "mean_shift":
            return self._score_mean_shift(X, cond)
        out = {}
        for domain, model in self.models_.items():
            scores = model.decision_function(X, cond)
            if domain in self.stats_:
                mean, std = self.stats_[domain]
                scores = (scores - mean) / std
            out[domain] = scores
        return out

    def _score_mean_shift(self, X: np.ndarray, cond: np.ndarray | None) -> dict[str, np.ndarray]:
        model = self.models_["source"]
        out = {"source": model.decision_function(X, cond)}
        if self.shifts_:
            keys = _condition_keys(len(X), cond)
            moved = X.copy()
            for key, shift in self.shifts_.items():
                moved[keys == key] += shift.astype(X.dtype, copy=False)
            # rows of a condition without target clips are not moved: their "target" score is the source one
            out["target"] = model.decision_function(moved, cond)
        return out

    def decision_function(self, X: Any, condition: Any = None) -> np.ndarray:
        """Anomaly score per row (higher = more anomalous): the minimum over the domain models."""
        return self.decision_with_model(X, condition)[0]

    def decision_with_model(self, X: Any, condition: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`decision_function` and, per row, the name of the model that gave the minimum
        (``"source"``, ``"target"`` or ``"pooled"``; ties go to the first, the source model)."""
        per_domain = self.score_domains(X, condition)
        stacked = np.stack(list(per_domain.values()))
        return np.min(stacked, axis=0), np.asarray(list(per_domain))[np.argmin(stacked, axis=0)]

    def score_samples(self, X: Any, condition: Any = None) -> np.ndarray:
        """Deprecated alias of :meth:`decision_function`."""
        deprecated_score_samples(type(self).__name__)
        return self.decision_function(X, condition)

    # ---- persistence: one sub-folder per domain model, params.json last
    def save(self, directory: str | Path) -> Path:
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for domain, model in self.models_.items():
            model.save(directory / domain)
        if self.input_mean_ is not None:
            atomic_save_npy(directory / STANDARDISE_MEAN, self.input_mean_)
            atomic_save_npy(directory / STANDARDISE_SCALE, self.input_scale_)
        meta = {
            "name": NAME,
            "format": FORMAT_VERSION,
            "params": self.get_params(),
            "state": {
                "models": sorted(self.models_),
                "stats": self.stats_,
                "shifts": {key: [float(v) for v in shift] for key, shift in self.shifts_.items()},
                "normalise_": self.normalise_,
                "n_features_in_": self.n_features_in_,
                "standardised": self.input_mean_ is not None,
            },
        }
        atomic_write_json(directory / PARAMS_FILE, meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "DomainAdaptiveDetector":
        directory = Path(directory)
        meta = read_saved_params(directory)
        if meta["name"] != NAME:
            raise DataError(f"{directory}: holds detector {meta['name']!r}, not a domain-adaptive wrapper")
        obj = cls(**meta["params"])
        state = meta["state"]
        obj.models_ = {domain: load_detector(directory / domain) for domain in state["models"]}
        obj.stats_ = {k: [float(v) for v in vals] for k, vals in state["stats"].items()}
        obj.shifts_ = {k: np.asarray(v, dtype=np.float64) for k, v in state.get("shifts", {}).items()}
        obj.normalise_ = state["normalise_"]
        obj.n_features_in_ = int(state["n_features_in_"])
        obj.input_mean_ = obj.input_scale_ = None
        if state.get("standardised"):
            obj.input_mean_ = load_array(directory / STANDARDISE_MEAN, (obj.n_features_in_,))
            obj.input_scale_ = load_array(directory / STANDARDISE_SCALE, (obj.n_features_in_,))
        return obj

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"DomainAdaptiveDetector({params})"


def cross_fit_scores(
    name: str,
    conf: dict[str, Any] | None,
    X: Any,
    domains: Any,
    groups: Any,
    n_splits: int = 5,
    seed: int = 0,
    *,
    mode: str = _DEFAULT.mode,
    smote: int = _DEFAULT.smote,
    normalise: str = _DEFAULT.normalise,
    inner_splits: int = _DEFAULT.n_splits,
    condition: Any = None,
    standardise: bool = False,
) -> np.ndarray:
    """Out-of-fold scores of training rows (unbiased normal-clip scores for z-normalisation).

    Clips (``groups``) are dealt to ``n_splits`` folds, each domain separately so the target
    clips spread over folds; for each fold a :class:`DomainAdaptiveDetector` (``mode``,
    ``smote``, ``normalise``, ``inner_splits``) is fitted on the other folds and scores the
    held-out rows. Cost: ``n_splits`` wrapper fits (each with its own ``"oof"`` normalisation
    fits, if any); use few folds, or ``normalise="train"`` for expensive neural detectors.
    """
    who = f"cross_fit_scores({name!r})"
    X = check_matrix(X, who=who)
    domains = check_domains(domains, len(X), who=who)
    groups = check_groups(groups, len(X), who=who)
    cond = check_condition(condition, len(X), who=who)
    n_groups = len(np.unique(groups))
    n_splits = min(n_splits, n_groups)
    if n_splits < 2:
        raise DataError(f"{who}: needs at least 2 clips (groups) for out-of-fold scores, got {n_groups}")
    folds = assign_group_folds(groups, n_splits, seed=seed, strata=domains)
    out = np.empty(len(X))
    for fold in range(n_splits):
        held = folds == fold
        detector = DomainAdaptiveDetector(
            name, conf, mode=mode, smote=smote, seed=seed, normalise=normalise, n_splits=inner_splits,
            standardise=standardise,
        )
        if not (domains[~held] == "source").any() and mode != "pooled":
            raise DataError(f"{who}: fold {fold} has no source clips left to fit on")
        detector.fit(X[~held], domains[~held], _take(cond, ~held), groups[~held])
        out[held] = detector.decision_function(X[held], _take(cond, held))
    return out
