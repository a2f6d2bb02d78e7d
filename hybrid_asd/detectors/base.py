"""The detector contract (scikit-learn / PyOD style) shared by every inlier model.

A detector is built from plain parameters, ``fit`` on normal rows and then scores new rows:

* ``__init__`` stores parameters only (no validation, no work); ``get_params()`` returns them.
* ``fit(X, condition=None)`` returns ``self`` and sets attributes whose names end in ``_``.
* ``score_samples(X, condition=None)`` returns one float per row, **higher = more anomalous**;
  each detector flips its own sign once, inside itself.
* ``condition`` is an optional int array of per-row group ids (e.g. the section); conditional
  models (the flow) use it, the others ignore it.
* ``save(directory)`` / :func:`load_detector` round-trip without pickled code: parameters and
  small fitted values in ``params.json``, arrays as ``.npy``, FAISS indexes via
  ``faiss.write_index``, torch models as a ``state_dict`` loaded with ``weights_only=True``.
  ``params.json`` is written last, so its presence marks a complete save.

:class:`TorchDetector` holds the training loop shared by the neural detectors (flow, AE, IDNN).
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from hybrid_asd.errors import ConfigError, DataError, HybridASDError
from hybrid_asd.utils import atomic_save_npy, atomic_torch_save, atomic_write_json, resolve_device

log = logging.getLogger(__name__)

PARAMS_FILE = "params.json"
FORMAT_VERSION = 1


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


def read_saved_params(directory: str | Path) -> dict[str, Any]:
    """Read and check ``params.json`` of a saved detector."""
    path = Path(directory) / PARAMS_FILE
    if not path.is_file():
        raise DataError(f"{path}: no saved detector here (params.json missing; was save() interrupted?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    for key in ("name", "params"):
        if key not in meta:
            raise DataError(f"{path}: key {key!r} missing")
    return meta


def load_detector(directory: str | Path) -> Any:
    """Load any saved detector (or domain-adaptive wrapper), dispatching on the saved registry name."""
    meta = read_saved_params(directory)
    if meta["name"] == "domain_adaptive":
        from hybrid_asd.detectors.adapt import DomainAdaptiveDetector

        return DomainAdaptiveDetector.load(directory)
    from hybrid_asd.detectors.registry import DETECTORS

    cls = DETECTORS.get(meta["name"])
    return cls.load(directory)


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

    def score_samples(self, X: Any, condition: Any = None) -> np.ndarray:
        """Anomaly score per row, shape (n,), higher = more anomalous."""
        self._check_fitted()
        X = check_matrix(X, who=self._who(), n_features=self.n_features_in_)
        cond = check_condition(condition, len(X), who=self._who())
        scores = np.asarray(self._score(X, cond), dtype=np.float64).reshape(-1)
        if len(scores) != len(X):  # pragma: no cover - a bug in a subclass
            raise RuntimeError(f"{self._who()}: returned {len(scores)} scores for {len(X)} rows")
        if not np.all(np.isfinite(scores)):
            log.warning("%s: %d non-finite scores", self._who(), int((~np.isfinite(scores)).sum()))
        return scores

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
            return load_detector(directory)
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


# --------------------------------------------------------------------------- torch detectors


@contextlib.contextmanager
def torch_seeded(seed: int, device: str) -> Iterator[None]:
    """Seed torch inside the block only (the caller's global RNG state is restored afterwards)."""
    import torch

    devices = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class TorchDetector(Detector):
    """A detector whose model is a torch module trained by minibatch Adam on a per-row loss.

    Subclasses have the parameters ``epochs``, ``batch_size``, ``lr``, ``weight_decay``,
    ``seed`` and ``device`` and implement ``_build_module``, ``_tensors``, ``_batch_loss`` and
    ``_batch_scores``. ``_fit_preprocessing`` may fit what ``_tensors`` needs (standardisation,
    condition ids). Training logs through ``logging`` (no progress bars: this is library code).
    """

    #: skip minibatches of one row (BatchNorm cannot train on them)
    min_batch_rows: ClassVar[int] = 1
    #: gradient-norm clipping; None disables
    grad_clip: ClassVar[float | None] = None
    score_batch_size: ClassVar[int] = 8192

    @abc.abstractmethod
    def _build_module(self, n_features: int) -> Any: ...

    @abc.abstractmethod
    def _tensors(self, X: np.ndarray, condition: np.ndarray | None) -> tuple[Any, ...]:
        """CPU float32 tensors with one row per input row (model inputs, targets, context)."""

    @abc.abstractmethod
    def _batch_loss(self, module: Any, batch: tuple[Any, ...]) -> Any: ...

    @abc.abstractmethod
    def _batch_scores(self, module: Any, batch: tuple[Any, ...]) -> Any: ...

    def _fit_preprocessing(self, X: np.ndarray, condition: np.ndarray | None) -> None:
        """Fit preprocessing statistics (default: none)."""

    def _validate_training_params(self) -> None:
        for key in ("epochs",):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 0:
                raise self._bad_param(key, value, "an int >= 0")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise self._bad_param("batch_size", self.batch_size, "an int >= 1")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise self._bad_param("lr", self.lr, "a float > 0")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise self._bad_param("weight_decay", self.weight_decay, "a float >= 0")

    def _fit(self, X: np.ndarray, condition: np.ndarray | None) -> None:
        import torch

        device = resolve_device(self.device)
        self._fit_preprocessing(X, condition)
        cpu_tensors = self._tensors(X, condition)
        moved: dict[int, Any] = {}  # move a tensor used twice (AE input = target) only once
        for t in cpu_tensors:
            if id(t) not in moved:
                moved[id(t)] = t.to(device)
        tensors = tuple(moved[id(t)] for t in cpu_tensors)
        n = len(X)
        if n < max(self.min_batch_rows, 1):
            raise DataError(f"{self._who()}: needs at least {self.min_batch_rows} training rows, got {n}")
        with torch_seeded(self.seed, device):
            module = self._build_module(X.shape[1]).to(device)
            optimiser = torch.optim.Adam(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            generator = torch.Generator().manual_seed(self.seed)
            self.initial_loss_ = self._mean_loss(module, tensors)
            history: list[float] = []
            for epoch in range(self.epochs):
                started = time.perf_counter()
                history.append(self._train_epoch(module, optimiser, tensors, generator, epoch))
                seconds = time.perf_counter() - started
                # every 10th epoch, the last, and every epoch that is slow enough to wait for
                loud = (epoch + 1) % 10 == 0 or epoch + 1 == self.epochs or seconds > 10.0
                log.log(logging.INFO if loud else logging.DEBUG, "%s epoch %d/%d loss %.5f (%.1f s)",
                        self._who(), epoch + 1, self.epochs, history[-1], seconds)  # fmt: skip
        module.eval()
        self.module_ = module
        self.device_ = device
        self.loss_history_ = history
        self.final_loss_ = self._mean_loss(module, tensors)

    def _train_epoch(self, module: Any, optimiser: Any, tensors: tuple[Any, ...], generator: Any, epoch: int) -> float:
        import torch

        module.train()
        n = len(tensors[0])
        total = torch.zeros((), device=tensors[0].device)
        count = 0
        for idx in torch.randperm(n, generator=generator).split(self.batch_size):
            if len(idx) < self.min_batch_rows:
                continue
            idx = idx.to(tensors[0].device)
            batch = tuple(t[idx] for t in tensors)
            loss = self._batch_loss(module, batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), self.grad_clip)
            optimiser.step()
            total += loss.detach() * len(idx)
            count += len(idx)
        mean = float(total.item()) / max(count, 1)
        if not np.isfinite(mean):
            raise TrainingError(
                f"{self._who()}: training diverged (non-finite loss in epoch {epoch + 1}); try a lower lr"
            )
        return mean

    def _mean_loss(self, module: Any, tensors: tuple[Any, ...]) -> float:
        """Mean of the per-row scores in eval mode (the training objective without gradients)."""
        return float(np.mean(self._scores_in_batches(module, tensors)))

    def _scores_in_batches(self, module: Any, tensors: tuple[Any, ...]) -> np.ndarray:
        import torch

        was_training = module.training
        module.eval()
        device = next(iter(module.state_dict().values())).device
        out = []
        with torch.no_grad():
            for start in range(0, len(tensors[0]), self.score_batch_size):
                batch = tuple(t[start : start + self.score_batch_size].to(device) for t in tensors)
                out.append(self._batch_scores(module, batch).double().cpu().numpy())
        module.train(was_training)
        return np.concatenate(out)

    def _score(self, X: np.ndarray, condition: np.ndarray | None) -> np.ndarray:
        return self._scores_in_batches(self.module_, self._tensors(X, condition))

    # ---- persistence: the module's state_dict, loaded with weights_only=True
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state = {
            "loss_history_": [float(v) for v in self.loss_history_],
            "initial_loss_": float(self.initial_loss_),
            "final_loss_": float(self.final_loss_),
        }
        return state, {}

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.loss_history_ = list(state.get("loss_history_", []))
        self.initial_loss_ = float(state.get("initial_loss_", float("nan")))
        self.final_loss_ = float(state.get("final_loss_", float("nan")))

    def _save_files(self, directory: Path) -> None:
        weights = {k: v.detach().cpu() for k, v in self.module_.state_dict().items()}
        atomic_torch_save(directory / "model.pt", weights)

    def _load_files(self, directory: Path) -> None:
        import torch

        path = directory / "model.pt"
        if not path.is_file():
            raise DataError(f"{path}: model weights missing")
        weights = torch.load(path, map_location="cpu", weights_only=True)
        device = resolve_device(self.device)
        module = self._build_module(self.n_features_in_)
        module.load_state_dict(weights)
        self.module_ = module.to(device).eval()
        self.device_ = device


def warn(message: str) -> None:
    """Emit a UserWarning (callers see it; the CLI can route it to logging with captureWarnings)."""
    warnings.warn(message, UserWarning, stacklevel=3)
