"""Views of a log-mel spectrogram that the detectors and extractors consume.

- :func:`make_patches`: overlapping windows of ``frames`` frames every ``hop`` frames
  (MobileNetV2 baseline input, P = 64, L = 8).
- :func:`stack_frames`: concatenated consecutive frames (AE baseline input, 5 x 128 = 640).
- :func:`clip_statistics`: per-mel mean and standard deviation over time ("logmel_stats").
- :func:`channel_statistics`, :func:`channel_stack_frames`: the same for ``(channels, n_mels, T)``
  log-mels (``data.channel: all``): each channel's, concatenated.

Each accepts NumPy arrays or torch tensors and returns the same kind.
"""

from __future__ import annotations

import logging
from typing import TypeVar

import numpy as np
import torch

log = logging.getLogger(__name__)

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def n_patches(n_frames: int, frames: int = 64, hop: int = 8) -> int:
    """Number of patches of a clip of ``n_frames`` frames: ``floor((T - P) / L) + 1``.

    The DCASE 2021 MobileNetV2 baseline (``00_train.py``) builds every window of P frames
    with ``file_to_vectors`` (``T - P + 1`` of them, starts 0..T-P) and keeps every L-th one
    (``vectors[::n_hop_frames]``), so the patches start at 0, L, 2L, ... <= T - P and there
    are ``ceil((T - P + 1) / L) = floor((T - P) / L) + 1`` of them: 32 for a 10 s clip
    (T = 313, P = 64, L = 8). The task paper's ``floor((T - P) / L)`` drops the last one; we
    follow the code.
    """
    if n_frames < frames:
        raise ValueError(
            f"clip of {n_frames} frames is shorter than one patch of {frames} frames"
        )
    return (n_frames - frames) // hop + 1


def make_patches(logmel: ArrayT, frames: int = 64, hop: int = 8) -> ArrayT:
    """Cut ``(n_mels, T)`` into ``(n_patches, n_mels, frames)``; ``(B, n_mels, T)`` into
    ``(B, n_patches, n_mels, frames)``.

    Patch ``i`` is ``logmel[..., :, i * hop : i * hop + frames]`` (see :func:`n_patches` for the
    count). The baseline's own layout is the transpose, ``(frames, n_mels)`` per patch. Its
    test script (``01_test.py``) scores every window (hop 1): ``hop=1`` reproduces that.
    NumPy input gives a new contiguous array; torch input gives a strided view (no copy).
    A clip shorter than ``frames`` frames raises ValueError.
    """
    if frames < 1 or hop < 1:
        raise ValueError(f"frames and hop must be >= 1, got frames={frames}, hop={hop}")
    if logmel.ndim not in (2, 3):
        raise ValueError(f"expected (n_mels, T) or (B, n_mels, T), got shape {tuple(logmel.shape)}")
    count = n_patches(int(logmel.shape[-1]), frames, hop)
    if isinstance(logmel, torch.Tensor):
        # unfold: (..., n_mels, n_patches, frames) -> (..., n_patches, n_mels, frames)
        return logmel.unfold(-1, frames, hop).transpose(-3, -2)
    windows = np.lib.stride_tricks.sliding_window_view(logmel, frames, axis=-1)[..., ::hop, :]
    assert windows.shape[-2] == count
    return np.ascontiguousarray(np.swapaxes(windows, -3, -2))


def stack_frames(logmel: ArrayT, n_frames: int = 5) -> ArrayT:
    """Frame-stacked vectors ``(T - n_frames + 1, n_frames * n_mels)`` as the AE baseline's
    ``file_to_vectors``: ``vectors[:, n_mels*t : n_mels*(t+1)] = logmel[:, t : t + n_vectors].T``.

    Like the baseline, a clip shorter than ``n_frames`` frames gives an empty ``(0, dims)``
    array (with a warning). The dtype follows the input (the baseline used float64).
    """
    if logmel.ndim != 2:
        raise ValueError(f"expected (n_mels, T), got shape {tuple(logmel.shape)}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    n_mels, total = int(logmel.shape[0]), int(logmel.shape[1])
    n_vectors = total - n_frames + 1
    if n_vectors < 1:
        log.warning("clip of %d frames is shorter than %d stacked frames: no vectors", total, n_frames)
        if isinstance(logmel, torch.Tensor):
            return logmel.new_empty((0, n_frames * n_mels))
        return np.empty((0, n_frames * n_mels), dtype=logmel.dtype)
    if isinstance(logmel, torch.Tensor):
        # (n_mels, n_vectors, n_frames) -> (n_vectors, n_frames, n_mels) -> flatten
        return logmel.unfold(1, n_frames, 1).permute(1, 2, 0).reshape(n_vectors, n_frames * n_mels)
    windows = np.lib.stride_tricks.sliding_window_view(logmel, n_frames, axis=1)
    return np.ascontiguousarray(windows.transpose(1, 2, 0)).reshape(n_vectors, n_frames * n_mels)


def clip_statistics(logmel: ArrayT) -> ArrayT:
    """Per-mel mean and (population) standard deviation over time, concatenated:
    ``(n_mels, T)`` -> ``(2 * n_mels,)``; ``(B, n_mels, T)`` -> ``(B, 2 * n_mels)``.

    Computed in float64, returned in the input's dtype.
    """
    if logmel.ndim not in (2, 3):
        raise ValueError(f"expected (n_mels, T) or (B, n_mels, T), got shape {tuple(logmel.shape)}")
    if logmel.shape[-1] < 1:
        raise ValueError("clip has no frames")
    if isinstance(logmel, torch.Tensor):
        x = logmel.double()
        stats = torch.cat([x.mean(-1), x.std(-1, correction=0)], dim=-1)
        return stats.to(logmel.dtype) if logmel.is_floating_point() else stats
    x = np.asarray(logmel, dtype=np.float64)
    stats = np.concatenate([x.mean(-1), x.std(-1)], axis=-1)
    out_dtype = logmel.dtype if np.issubdtype(logmel.dtype, np.floating) else np.float64
    return stats.astype(out_dtype, copy=False)


def channel_statistics(logmel: np.ndarray) -> np.ndarray:
    """:func:`clip_statistics` of a ``(n_mels, T)`` log-mel, or of each plane of a ``(channels, n_mels, T)``
    one (``data.channel: all``) concatenated: ``(channels * 2 * n_mels,)``, channel 0 first."""
    if logmel.ndim == 2:
        return clip_statistics(logmel)
    return np.concatenate([clip_statistics(plane) for plane in logmel])


def channel_stack_frames(logmel: np.ndarray, n_frames: int = 5) -> np.ndarray:
    """:func:`stack_frames` of a ``(n_mels, T)`` log-mel, or of each plane of a ``(channels, n_mels, T)``
    one side by side: ``(T - n_frames + 1, channels * n_frames * n_mels)``, channel 0 first."""
    if logmel.ndim == 2:
        return stack_frames(logmel, n_frames)
    return np.concatenate([stack_frames(plane, n_frames) for plane in logmel], axis=1)
