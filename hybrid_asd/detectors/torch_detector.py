"""The training loop shared by the neural detectors (flow, AE, IDNN), apart from the detector contract.

:class:`TorchDetector` is a :class:`~hybrid_asd.detectors.base.Detector` whose model is a torch
module trained by minibatch Adam on a per-row loss and saved as a ``state_dict``. torch is imported
inside the methods that use it: building the registry (and loading a config) must not load torch.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from hybrid_asd.detectors.base import Detector, TrainingError
from hybrid_asd.errors import DataError
from hybrid_asd.utils import atomic_torch_save, resolve_device

log = logging.getLogger(__name__)


@contextlib.contextmanager
def torch_seeded(seed: int, device: str) -> Iterator[None]:
    """Seed torch inside the block only (the caller's global RNG state is restored afterwards)."""
    import torch  # lazy: the registry (and config loading) must not load torch
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
        import torch  # lazy: the registry (and config loading) must not load torch
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
        import torch  # lazy: the registry (and config loading) must not load torch
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
        import torch  # lazy: the registry (and config loading) must not load torch
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
        import torch  # lazy: the registry (and config loading) must not load torch
        path = directory / "model.pt"
        if not path.is_file():
            raise DataError(f"{path}: model weights missing")
        weights = torch.load(path, map_location="cpu", weights_only=True)
        device = resolve_device(self.device)
        module = self._build_module(self.n_features_in_)
        module.load_state_dict(weights)
        self.module_ = module.to(device).eval()
        self.device_ = device
