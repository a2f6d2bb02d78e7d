"""The official DCASE 2020/2021 Task 2 dense autoencoder baseline and its interpolation variant.

Rows are frames: each row is a stack of ``n_frames`` consecutive log-mel frames, frame-major
(``[frame 0 mels..., frame 1 mels..., ...]``, the baseline's layout: 5 x 128 = 640 values). The
detectors score rows; the stage averages the row scores of a clip.

Architecture, as the official Keras baseline (``keras_model.get_model``): Dense 128 x 4, a
bottleneck Dense 8, Dense 128 x 4, a linear output layer; every hidden Dense is followed by
BatchNormalization and ReLU (the bottleneck too). Keras defaults are mirrored: Glorot-uniform
weights and zero biases, BatchNorm momentum 0.99 (torch ``momentum=0.01``) and epsilon 1e-3.
Training: Adam (lr 1e-3), MSE, 100 epochs, batch 512, shuffled. Unlike the baseline we train on
all rows (its 10 % validation split was only monitored). Score per row = mean squared error.

IDNN (Suefusa et al., ICASSP 2020, "Anomalous sound detection based on interpolation deep
neural network"): the input is the stack without its centre frame and the network predicts the
centre frame; score = MSE on the centre frame. It uses the same dense body as the AE here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hybrid_asd.errors import DataError
from hybrid_asd.detectors.torch_detector import TorchDetector
from hybrid_asd.detectors.registry import register


def dense_autoencoder(
    n_inputs: int, n_outputs: int, hidden_features: int = 128, hidden_layers: int = 4, bottleneck: int = 8
) -> Any:
    """The baseline network: [Dense-BN-ReLU] x hidden_layers, bottleneck, mirrored, linear output."""
    import torch  # lazy: the registry (and config loading) must not load torch
    from torch import nn  # lazy: the registry (and config loading) must not load torch
    def block(n_in: int, n_out: int) -> list[nn.Module]:
        return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out, eps=1e-3, momentum=0.01), nn.ReLU()]

    widths = [n_inputs] + [hidden_features] * hidden_layers + [bottleneck] + [hidden_features] * hidden_layers
    layers: list[nn.Module] = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += block(n_in, n_out)
    layers.append(nn.Linear(widths[-1], n_outputs))
    net = nn.Sequential(*layers)
    for layer in net:
        if isinstance(layer, nn.Linear):  # Keras Dense defaults
            nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    return net


class _DenseReconstruction(TorchDetector):
    """Shared parameters and training of the AE and the IDNN (they differ in input and target)."""

    min_batch_rows = 2  # BatchNorm cannot train on a batch of one row

    def __init__(
        self,
        hidden_features: int = 128,
        hidden_layers: int = 4,
        bottleneck: int = 8,
        epochs: int = 100,
        batch_size: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        seed: int = 0,
        device: str = "auto",
    ):
        self.hidden_features = hidden_features
        self.hidden_layers = hidden_layers
        self.bottleneck = bottleneck
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.device = device

    def _validate_params(self) -> None:
        for key in ("hidden_features", "hidden_layers", "bottleneck"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise self._bad_param(key, value, "an int >= 1")
        self._validate_training_params()

    def _batch_loss(self, module: Any, batch: tuple[Any, ...]) -> Any:
        inputs, target = batch
        return ((module(inputs) - target) ** 2).mean()

    def _batch_scores(self, module: Any, batch: tuple[Any, ...]) -> Any:
        inputs, target = batch
        return ((module(inputs) - target) ** 2).mean(dim=1)


@register
class AEDetector(_DenseReconstruction):
    """The official dense AE baseline; score per row = mean squared reconstruction error.

    Parameters: ``hidden_features`` (128), ``hidden_layers`` per side (4), ``bottleneck`` (8),
    ``epochs`` (100), ``batch_size`` (512), ``lr`` (Adam, 1e-3), ``weight_decay``, ``seed``,
    ``device``. The input size is taken from the data (640 for 5 x 128 stacked frames).
    """

    name = "ae"

    def _build_module(self, n_features: int) -> Any:
        return dense_autoencoder(n_features, n_features, self.hidden_features, self.hidden_layers, self.bottleneck)

    def _tensors(self, X: np.ndarray, condition: np.ndarray | None) -> tuple[Any, ...]:
        import torch  # lazy: the registry (and config loading) must not load torch
        x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))  # no copy of float32 rows
        return x, x


@register
class IDNNDetector(_DenseReconstruction):
    """Interpolation DNN: predict the centre frame from the others; score = its MSE per row.

    ``n_frames`` (5) is the number of stacked frames in a row; ``n_mels = n_features / n_frames``
    is inferred from the data (an error when it does not divide). Other parameters as the AE.
    """

    name = "idnn"

    def __init__(
        self,
        n_frames: int = 5,
        hidden_features: int = 128,
        hidden_layers: int = 4,
        bottleneck: int = 8,
        epochs: int = 100,
        batch_size: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        seed: int = 0,
        device: str = "auto",
    ):
        super().__init__(hidden_features, hidden_layers, bottleneck, epochs, batch_size, lr, weight_decay, seed, device)
        self.n_frames = n_frames

    def _validate_params(self) -> None:
        if not isinstance(self.n_frames, int) or self.n_frames < 3 or self.n_frames % 2 == 0:
            raise self._bad_param("n_frames", self.n_frames, "an odd int >= 3 (a centre frame with context)")
        super()._validate_params()

    def _n_mels(self, n_features: int) -> int:
        if n_features % self.n_frames:
            raise DataError(
                f"{self._who()}: rows have {n_features} values, not a multiple of n_frames={self.n_frames}"
            )
        return n_features // self.n_frames

    def _split(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(context frames without the centre, centre frame)."""
        n_mels = self._n_mels(X.shape[1])
        lo, hi = (self.n_frames // 2) * n_mels, (self.n_frames // 2 + 1) * n_mels
        return np.concatenate([X[:, :lo], X[:, hi:]], axis=1), X[:, lo:hi]

    def _build_module(self, n_features: int) -> Any:
        n_mels = self._n_mels(n_features)
        return dense_autoencoder(
            n_features - n_mels, n_mels, self.hidden_features, self.hidden_layers, self.bottleneck
        )

    def _tensors(self, X: np.ndarray, condition: np.ndarray | None) -> tuple[Any, ...]:
        import torch  # lazy: the registry (and config loading) must not load torch
        context, centre = self._split(X)
        return torch.from_numpy(context.astype(np.float32)), torch.from_numpy(centre.astype(np.float32))
