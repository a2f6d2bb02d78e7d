"""Normalizing-flow density of the normal data; score = negative log-likelihood.

A masked autoregressive flow (MAF, ``model="maf"``) or a neural spline flow (``"nsf"``), built
with ``library="zuko"`` (default) or ``"nflows"`` (the library first requested; an optional
extra: ``pip install 'hybrid_asd[nflows]'``). Both are built to the same size: ``transforms``
autoregressive layers, each a MADE with ``hidden_layers`` hidden layers of ``hidden_features``
ReLU units, with the feature order reversed between layers.

The default is zuko, from a measurement (``benchmarks/bench_flows.py``; docs/benchmarks.md,
"Normalizing flows"): for the same MAF (5 x (128, 128), 330k parameters) on 5000 x 128 rows, CPU,
zuko fitted 1.4-1.7x and scored 1.6-2.9x faster unconditionally, was on par when conditioned on
the section, and reached a lower loss in the same epochs. It is also maintained and needs only
torch (nflows' last release is from 2020 and it pulls matplotlib and tensorboard).

``conditional=True`` conditions every layer on a one-hot code of the per-row ``condition``
(e.g. the section), like the first-place DCASE 2021 system's conditional flow (Lopez et al.); the
condition ids seen at fit are the only ones accepted when scoring.

Inputs are standardised with the training mean and standard deviation (saved with the model);
the score is the negative log-likelihood of the *original* row (the standardisation's
log-determinant is added back), in nats.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hybrid_asd.errors import DataError
from hybrid_asd.detectors.torch_detector import TorchDetector
from hybrid_asd.detectors.registry import register

LIBRARIES = ("zuko", "nflows")
MODELS = ("maf", "nsf")
NFLOWS_MISSING = "nflows is not installed: pip install 'hybrid_asd[nflows]' (or use library='zuko')"
SPLINE_BOUND = 5.0  # zuko's NSF spline domain [-5, 5]; nflows is given the same linear-tail bound


def import_nflows() -> Any:
    try:
        import nflows  # noqa: F401
        # lazy: the registry (and config loading) must not load torch or a flow library
        from nflows import distributions, flows, transforms
    except ImportError as exc:
        raise ImportError(NFLOWS_MISSING) from exc
    return distributions, flows, transforms


def _flow_module(
    library: str, model: str, features: int, context: int, transforms: int,
    hidden_features: int, hidden_layers: int, bins: int,
) -> Any:
    """The flow as a torch module with ``log_prob(x, context)``; same size in both libraries."""
    import torch  # lazy: the registry (and config loading) must not load torch or a flow library
    class ZukoFlow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            import zuko  # lazy: the registry (and config loading) must not load torch or a flow library
            hidden = [hidden_features] * hidden_layers
            if model == "maf":
                self.flow = zuko.flows.MAF(features, context, transforms=transforms, hidden_features=hidden)
            else:
                self.flow = zuko.flows.NSF(
                    features, context, bins=bins, transforms=transforms, hidden_features=hidden
                )

        def log_prob(self, x: Any, c: Any = None) -> Any:
            return self.flow(c).log_prob(x)

    class NflowsFlow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            distributions, flows, tr = import_nflows()
            layers = []
            for _ in range(transforms):
                common = dict(
                    features=features,
                    hidden_features=hidden_features,
                    context_features=context or None,
                    num_blocks=hidden_layers - 1,  # MADE: input layer + blocks = hidden layers
                    use_residual_blocks=False,
                    random_mask=False,
                )
                if model == "maf":
                    layers.append(tr.MaskedAffineAutoregressiveTransform(**common))
                else:
                    layers.append(
                        tr.MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                            num_bins=bins, tails="linear", tail_bound=SPLINE_BOUND, **common
                        )
                    )
                layers.append(tr.ReversePermutation(features=features))
            self.flow = flows.Flow(tr.CompositeTransform(layers), distributions.StandardNormal([features]))

        def log_prob(self, x: Any, c: Any = None) -> Any:
            return self.flow.log_prob(x, context=c)

    return ZukoFlow() if library == "zuko" else NflowsFlow()


@register
class FlowDetector(TorchDetector):
    """MAF / NSF density model; score = negative log-likelihood (see the module docstring).

    Parameters: ``library`` "zuko" | "nflows"; ``model`` "maf" | "nsf"; ``transforms``;
    ``hidden_features`` and ``hidden_layers`` of each MADE; ``bins`` (NSF only);
    ``conditional`` (use ``condition`` as context); training ``epochs``, ``batch_size``, ``lr``
    (Adam), ``weight_decay``; ``seed``; ``device`` "auto" | "cpu" | "cuda".
    """

    name = "flow"
    grad_clip = 5.0  # flows occasionally produce a huge gradient early in training

    def __init__(
        self,
        library: str = "zuko",
        model: str = "maf",
        transforms: int = 5,
        hidden_features: int = 128,
        hidden_layers: int = 2,
        bins: int = 8,
        conditional: bool = False,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        seed: int = 0,
        device: str = "auto",
    ):
        self.library = library
        self.model = model
        self.transforms = transforms
        self.hidden_features = hidden_features
        self.hidden_layers = hidden_layers
        self.bins = bins
        self.conditional = conditional
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.device = device

    def _validate_params(self) -> None:
        if self.library not in LIBRARIES:
            raise self._bad_param("library", self.library, f"one of {LIBRARIES}")
        if self.model not in MODELS:
            raise self._bad_param("model", self.model, f"one of {MODELS}")
        for key in ("transforms", "hidden_features", "hidden_layers", "bins"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise self._bad_param(key, value, "an int >= 1")
        if not isinstance(self.conditional, bool):
            raise self._bad_param("conditional", self.conditional, "true or false")
        self._validate_training_params()
        if self.library == "nflows":
            import_nflows()

    # ---- preprocessing: standardisation and one-hot context
    def _fit_preprocessing(self, X: np.ndarray, condition: np.ndarray | None) -> None:
        self.mean_ = X.mean(axis=0, dtype=np.float64)
        std = X.std(axis=0, dtype=np.float64)
        self.std_ = np.where(std > 1e-8, std, 1.0)  # constant features: leave unscaled
        if self.conditional:
            if condition is None:
                raise DataError(f"{self._who()}: conditional=true needs a condition (group id) per row")
            self.conditions_ = np.unique(condition)
        else:
            self.conditions_ = np.zeros(0, dtype=np.int64)

    def _context(self, condition: np.ndarray | None, n: int) -> np.ndarray | None:
        if not self.conditional:
            return None
        if condition is None:
            raise DataError(f"{self._who()}: conditional flow needs a condition (group id) per row")
        pos = np.searchsorted(self.conditions_, condition)
        pos = np.minimum(pos, len(self.conditions_) - 1)
        unknown = self.conditions_[pos] != condition
        if unknown.any():
            raise DataError(
                f"{self._who()}: condition id {int(condition[unknown][0])} was not seen at fit "
                f"(known: {self.conditions_.tolist()})"
            )
        onehot = np.zeros((n, len(self.conditions_)), dtype=np.float32)
        onehot[np.arange(n), pos] = 1.0
        return onehot

    def _tensors(self, X: np.ndarray, condition: np.ndarray | None) -> tuple[Any, ...]:
        import torch  # lazy: the registry (and config loading) must not load torch or a flow library
        z = torch.from_numpy(((X - self.mean_) / self.std_).astype(np.float32))
        context = self._context(condition, len(X))
        return (z,) if context is None else (z, torch.from_numpy(context))

    # ---- model
    def _build_module(self, n_features: int) -> Any:
        return _flow_module(
            self.library, self.model, n_features, len(self.conditions_), self.transforms,
            self.hidden_features, self.hidden_layers, self.bins,
        )

    def _batch_loss(self, module: Any, batch: tuple[Any, ...]) -> Any:
        return -module.log_prob(*batch).mean()

    def _batch_scores(self, module: Any, batch: tuple[Any, ...]) -> Any:
        # NLL of the original row: NLL of the standardised row + sum(log std).
        return -module.log_prob(*batch) + float(np.log(self.std_).sum())

    # ---- persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state, arrays = super()._get_state()
        arrays.update(mean=self.mean_, std=self.std_, conditions=self.conditions_)
        return state, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(state, arrays)
        self.mean_, self.std_, self.conditions_ = arrays["mean"], arrays["std"], arrays["conditions"]
