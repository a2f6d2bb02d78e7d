"""Training data of the extractor: log-mel patches indexed into one array held in memory.

All training log-mels are loaded once (from the feature cache) and concatenated along time;
an epoch is a table of (absolute start frame, label) rows, so a batch is one NumPy gather
(``sliding_window_view`` + fancy indexing) instead of one Python call per patch. The dataset
implements ``__getitems__`` (batched fetching in ``torch.utils.data.DataLoader``) and is
picklable, so DataLoader workers may be started with the ``spawn`` method.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from hybrid_asd.errors import DataError
from hybrid_asd.extractor.noise import NoiseMixer

log = logging.getLogger(__name__)


def patch_starts(n_frames: int, frames: int, hop: int) -> np.ndarray:
    """Start frames of the patches of a clip: ``0, hop, 2 hop, ...`` while a whole patch fits.

    The same rule as :func:`hybrid_asd.features.patches.make_patches` (a test checks it).
    """
    if n_frames < frames:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_frames - frames + 1, hop, dtype=np.int64)


def stratified_split(
    label_ids: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split clip indices into (train, validation), stratified by class and by clip.

    Each class gives ``round(n * val_fraction)`` clips to validation but keeps at least one for
    training (so the 3 target clips of a section stay in training at small fractions).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"extractor.val_fraction must be in [0, 1), got {val_fraction}")
    train: list[int] = []
    val: list[int] = []
    for cls in np.unique(label_ids):
        members = np.flatnonzero(label_ids == cls)
        members = members[rng.permutation(len(members))]
        n_val = min(int(round(len(members) * val_fraction)), len(members) - 1)
        val.extend(members[:n_val].tolist())
        train.extend(members[n_val:].tolist())
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(val, dtype=np.int64))


def identity_collate(batch):  # noqa: ANN001, ANN201 - a module-level function so "spawn" workers can pickle it
    """The dataset's ``__getitems__`` already returns a batch."""
    return batch


def batch_noise_rng(seed: int, epoch: int, idx: np.ndarray) -> np.random.Generator:
    """The noise draws of a batch: fixed by the seed, the epoch and the batch's items (so a run
    repeats, whichever worker fetches the batch)."""
    return np.random.default_rng([seed, epoch, 7919, *np.asarray(idx).tolist()])


class PatchDataset(Dataset):
    """Fixed-size windows of in-memory log-mels with their class labels.

    Parameters
    ----------
    logmels: log-mels ``(n_mels, T_i)`` of the clips, or ``(channels, n_mels, T_i)`` (``data.channel:
        all``: the channels become the network's input planes, ``(B, channels, n_mels, frames)``).
    labels: class id of each clip.
    frames, hop: window length and hop in frames (patches mode: 64 and 8; clip mode: the
        training crop length and 1, with one random crop per clip and epoch).
    repeats: per-clip repeat factor (target-domain oversampling); default 1.
    max_per_clip: windows drawn per clip and epoch (without replacement, re-drawn every epoch
        by :meth:`set_epoch`); ``None`` = all.
    seed: seeds the per-epoch draws (``numpy.random.default_rng([seed, epoch])``).
    names: clip names for error messages.
    """

    def __init__(
        self,
        logmels: Sequence[np.ndarray],
        labels: np.ndarray,
        frames: int,
        hop: int,
        *,
        repeats: np.ndarray | None = None,
        max_per_clip: int | None = None,
        seed: int = 0,
        names: Sequence[str] | None = None,
    ):
        if len(logmels) == 0:
            raise DataError("no training clips")
        n_mels = {m.shape[-2] for m in logmels}
        if len(n_mels) != 1:
            raise DataError(f"log-mels with different numbers of mel bands: {sorted(n_mels)}")
        planes = {1 if m.ndim == 2 else m.shape[0] for m in logmels}
        if len(planes) != 1:
            first = [i for i, m in enumerate(logmels) if (1 if m.ndim == 2 else m.shape[0]) != min(planes)][0]
            name = names[first] if names is not None else f"clip #{first}"
            raise DataError(f"clips with different numbers of channels {sorted(planes)} (data.channel: all), "
                            f"e.g. {name}")
        self.frames = int(frames)
        self.n_mels = n_mels.pop()
        self.in_channels = planes.pop()
        lengths = np.asarray([m.shape[-1] for m in logmels], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.candidates = [off + patch_starts(int(t), self.frames, int(hop)) for off, t in zip(offsets, lengths)]
        short = [i for i, c in enumerate(self.candidates) if len(c) == 0]
        if short:
            name = names[short[0]] if names is not None else f"clip #{short[0]}"
            raise DataError(
                f"{len(short)} clip(s) shorter than a patch of {self.frames} frames, first {name} "
                f"({lengths[short[0]]} frames)"
            )
        planes3d = [m if m.ndim == 3 else m[None] for m in logmels]  # (channels, n_mels, T)
        self.data = np.ascontiguousarray(np.concatenate(planes3d, axis=-1), dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.repeats = np.ones(len(logmels), dtype=np.int64) if repeats is None else np.asarray(repeats, np.int64)
        self.max_per_clip = None if max_per_clip is None else int(max_per_clip)
        self.seed = int(seed)
        self.per_clip = np.asarray(
            [len(c) if self.max_per_clip is None else min(len(c), self.max_per_clip) for c in self.candidates]
        )
        self.starts = np.zeros(0, dtype=np.int64)
        self.item_labels = np.zeros(0, dtype=np.int64)
        self.noise: NoiseMixer | None = None
        self.epoch = 0
        self.set_epoch(0)

    def add_noise(self, mixer: NoiseMixer) -> None:
        """Mix background noise into the windows of every batch (``data.supplemental``)."""
        if mixer.in_channels != self.in_channels or mixer.n_mels != self.n_mels:
            raise DataError(f"noise log-mels have {mixer.in_channels} channel(s) x {mixer.n_mels} mel bands, the "
                            f"training clips {self.in_channels} x {self.n_mels}")
        self.noise = mixer

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's windows (only where ``max_per_clip`` subsamples)."""
        self.epoch = int(epoch)
        rng = np.random.default_rng([self.seed, int(epoch)])
        starts, labels = [], []
        for cands, n, rep, label in zip(self.candidates, self.per_clip, self.repeats, self.labels):
            chosen = cands if n == len(cands) else np.sort(rng.choice(cands, size=n, replace=False))
            starts.append(np.tile(chosen, rep))
            labels.append(np.full(len(chosen) * rep, label, dtype=np.int64))
        self.starts = np.concatenate(starts)
        self.item_labels = np.concatenate(labels)

    def input_stats(self) -> tuple[float, float]:
        """Global mean and standard deviation of the log-mel values (for input standardisation)."""
        return float(self.data.mean(dtype=np.float64)), float(self.data.std(dtype=np.float64))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        windows = np.lib.stride_tricks.sliding_window_view(self.data, self.frames, axis=-1)
        batch = windows[:, :, self.starts[idx]].transpose(2, 0, 1, 3)  # (B, channels, n_mels, frames)
        if self.noise is not None:
            batch = self.noise.mix(batch, batch_noise_rng(self.seed, self.epoch, idx))
        x = torch.from_numpy(np.ascontiguousarray(batch))
        return x, torch.from_numpy(self.item_labels[idx])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]
