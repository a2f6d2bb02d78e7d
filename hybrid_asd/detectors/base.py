"""The detector contract (scikit-learn / PyOD style) shared by every inlier model.

A detector is built from plain parameters, ``fit`` on normal rows and then scores new rows:

* ``__init__`` stores parameters only (no validation, no work); ``get_params()`` returns them.
* ``fit(X, condition=None)`` returns ``self`` and sets attributes whose names end in ``_``.
* ``decision_function(X, condition=None)`` returns one float per row, **higher = more anomalous**;
  each detector flips its own sign once, inside itself. The name and the sign are PyOD's; in
  scikit-learn, ``score_samples`` means the opposite (higher = more normal), so it is only a
  deprecated alias here (:func:`deprecated_score_samples`), kept for older callers.
* ``condition`` is an optional int array of per-row group ids (e.g. the section); conditional
  models (the flow) use it, the others ignore it.
* ``save(directory)`` / :func:`load_detector` round-trip without pickled code: parameters and
  small fitted values in ``params.json``, arrays as ``.npy``, FAISS indexes via
  ``faiss.write_index``, torch models as a ``state_dict`` loaded with ``weights_only=True``.
  ``params.json`` is written last, so its presence marks a complete save.

:class:`~hybrid_asd.detectors.torch_detector.TorchDetector` holds the training loop shared by the
neural detectors (flow, AE, IDNN).
"""

from __future__ import annotations

import abc
import inspect
import logging
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hybrid_asd.detectors.persistence import FORMAT_VERSION, PARAMS_FILE, load_detector, read_saved_params
from hybrid_asd.errors import ConfigError, DataError, HybridASDError
from hybrid_asd.utils import atomic_save_npy, atomic_write_json

log = logging.getLogger(__name__)

class NotFittedError(HybridASDError, RuntimeError):
    """A detector was asked to score or save before ``fit``."""


class TrainingError(HybridASDError, RuntimeError):
    """Training of a neural detector diverged (non-finite loss)."""


# --------------------------------------------------------------------------- input checks


def check_matrix(X: Any, *, who: str, n_features: int | None = None, what: str = "X") -> np.ndarray:
    """Return ``X`` as a finite 2-D float array or raise a DataError naming ``who`` and the problem.

    float32 input stays float32 (large frame matrices); anything else becomes float64.
    """
    try:
        arr = np.asarray(X)
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{who}: {what} is not a numeric array ({exc})") from None
    if arr.ndim != 2:
        raise DataError(f"{who}: {what} must be 2-D (n_rows, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise DataError(f"{who}: {what} has no rows")
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(
            f"{who}: {what} has {arr.shape[1]} features but the detector was fitted on {n_features}"
        )
    finite = np.isfinite(arr)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise DataError(
            f"{who}: {what} has {int((~finite).sum())} non-finite values (NaN/inf) in "
            f"{len(bad_rows)} row(s), first at row {int(bad_rows[0])}"
        )
    return arr


def check_condition(condition: Any, n_rows: int, *, who: str) -> np.ndarray | None:
    """Return ``condition`` as a 1-D int64 array of length ``n_rows`` (or None)."""
    if condition is None:
        return None
    arr = np.asarray(condition)
    if arr.ndim != 1 or len(arr) != n_rows:
        raise DataError(
            f"{who}: condition must be a 1-D array with one group id per row ({n_rows}), "
            f"got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise DataError(f"{who}: condition must hold integer group ids, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


# --------------------------------------------------------------------------- base class


class Detector(abc.ABC):
    """Base class of inlier models. Subclasses set ``name`` and implement ``_fit`` and ``_score``.

    Optional hooks: ``_validate_params`` (raise ConfigError), ``_get_state`` / ``_set_state``
    (JSON-able values and named arrays for save/load) and ``_save_files`` / ``_load_files``
    (FAISS or torch files).
    """

    name: ClassVar[str] = ""

    # ---- parameters
    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` parameters and their current values."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def _validate_params(self) -> None:
        """Raise ConfigError for bad parameter values (called by fit and build_detector)."""

    def _who(self) -> str:
        return f"detector {self.name!r}"

    def _bad_param(self, key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"{self._who()}: {key}={value!r} is invalid; expected {expected}")

    # ---- fit / score
    def fit(self, X: Any, condition: Any = None) -> "Detector":
        """Fit on normal rows ``X`` (n, d); ``condition`` is an optional per-row int group id."""
        self._validate_params()
        X = check_matrix(X, who=self._who())
        cond = check_condition(condition, len(X), who=self._who())
        self._fit(X, cond)
        self.n_features_in_ = int(X.shape[1])  # set last: marks the detector as fitted
        return self

    def decision_function(self, X: Any, condition: Any = None) -> np.ndarray:
        """Anomaly score per row, shape (n,), higher = more anomalous (PyOD's sign)."""
        self._check_fitted()
        X = check_matrix(X, who=self._who(), n_features=self.n_features_in_)
        cond = check_condition(condition, len(X), who=self._who())
        scores = np.asarray(self._score(X, cond), dtype=np.float64).reshape(-1)
        if len(scores) != len(X):  # pragma: no cover - a bug in a subclass
            raise RuntimeError(f"{self._who()}: returned {len(scores)} scores for {len(X)} rows")
        if not np.all(np.isfinite(scores)):
            log.warning("%s: %d non-finite scores", self._who(), int((~np.isfinite(scores)).sum()))
        return scores

    def score_samples(self, X: Any, condition: Any = None) -> np.ndarray:
        """Deprecated alias of :meth:`decision_function` (same sign: higher = more anomalous)."""
        deprecated_score_samples(type(self).__name__)
        return self.decision_function(X, condition)

    def is_fitted(self) -> bool:
        return hasattr(self, "n_features_in_")

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{self._who()} is not fitted yet: call fit(X) before scoring or saving")

    @abc.abstractmethod
    def _fit(self, X: np.ndarray, condition: np.ndarray | None) -> None: ...

    @abc.abstractmethod
    def _score(self, X: np.ndarray, condition: np.ndarray | None) -> np.ndarray: ...

    # ---- persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able fitted values and named arrays to save."""
        return {}, {}

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore what ``_get_state`` returned."""

    def _save_files(self, directory: Path) -> None:
        """Write extra files (FAISS index, torch state) atomically into ``directory``."""

    def _load_files(self, directory: Path) -> None:
        """Read the files written by ``_save_files`` (after ``_set_state``)."""

    def save(self, directory: str | Path) -> Path:
        """Save the fitted detector into ``directory`` (created); returns the directory."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state, arrays = self._get_state()
        for key, arr in arrays.items():
            atomic_save_npy(directory / f"{key}.npy", arr)
        self._save_files(directory)
        meta = {
            "name": self.name,
            "format": FORMAT_VERSION,
            "params": self.get_params(),
            "state": {**state, "n_features_in_": self.n_features_in_},
            "arrays": sorted(arrays),
        }
        atomic_write_json(directory / PARAMS_FILE, meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Detector":
        """Load a saved detector; ``Detector.load`` dispatches on the saved name."""
        if cls is Detector:
            return load_detector(directory)  # any saved detector, by the name it was saved under
        directory = Path(directory)
        meta = read_saved_params(directory)
        if meta["name"] != cls.name:
            raise DataError(f"{directory}: holds detector {meta['name']!r}, not {cls.name!r}")
        obj = cls(**meta["params"])
        arrays = {}
        for key in meta.get("arrays", []):
            path = directory / f"{key}.npy"
            if not path.is_file():
                raise DataError(f"{path}: array file missing")
            arrays[key] = np.load(path, allow_pickle=False)
        state = dict(meta.get("state", {}))
        obj.n_features_in_ = int(state.pop("n_features_in_"))
        obj._set_state(state, arrays)
        obj._load_files(directory)
        return obj

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def deprecated_score_samples(owner: str) -> None:
    """Warn that ``score_samples`` is the old name of ``decision_function``."""
    warnings.warn(
        f"{owner}.score_samples is deprecated: use decision_function (the same scores, higher = more anomalous; "
        "in scikit-learn score_samples means the opposite sign)", DeprecationWarning, stacklevel=3,
    )


def warn(message: str) -> None:
    """Emit a UserWarning (callers see it; the CLI can route it to logging with captureWarnings)."""
    warnings.warn(message, UserWarning, stacklevel=3)
