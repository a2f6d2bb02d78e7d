"""Whole-clip waveform data of the extractor (``extractor.input: waveform``, e.g. ``multibranch``).

- :class:`WaveformSource`: ``get_many(paths)`` -> waveforms loaded as the ``data`` section says;
  what :class:`~hybrid_asd.features.cache.FeatureCache` is for log-mels (no disk cache: reading
  a WAV costs about as much as reading a cached log-mel).
- :class:`CropDataset`: the training data: one crop of the network's input length per clip and
  epoch at a random offset (re-drawn every epoch; the cited systems' augmentation); clips
  shorter than a crop are tiled first, as the cited systems do. With ``random=False`` (validation)
  every clip gives its first crop.
- :func:`waveform_windows`: the crops a clip is embedded from at extraction: consecutive crops
  covering the clip, the last one ending at the clip's end (one crop when the clip has the crop's
  length; a shorter clip is tiled to one crop). A clip's embedding and OE score are the means
  over its crops, as over log-mel patches.

All waveforms of the training set are held in memory (float32): a DCASE 2021 machine type
(6 sections x ~1000 clips x 10 s at 16 kHz) takes about 3.8 GB.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from hybrid_asd.data.audio import load_audio
from hybrid_asd.data.settings import DataSettings
from hybrid_asd.errors import DataError
from hybrid_asd.extractor.dataset import batch_noise_rng
from hybrid_asd.extractor.noise import NoiseMixer

log = logging.getLogger(__name__)


class WaveformSource:
    """Waveforms of audio files (``sample_rate``, ``channel``, ``duration``, ``resample`` of the data section)."""

    def __init__(self, data: DataSettings | Mapping[str, Any]):
        data = DataSettings.parse(data, where="data")
        self.audio_conf = {"sample_rate": data.sample_rate, "channel": data.channel, "duration": data.duration,
                           "resample": data.resample}

    def __repr__(self) -> str:
        return f"WaveformSource({self.audio_conf})"

    def get_many(self, paths: Sequence[str | os.PathLike], progress: bool = True) -> list[np.ndarray]:
        """1-D float32 waveforms of ``paths``, in order."""
        return [load_audio(p, **self.audio_conf)
                for p in tqdm(paths, desc="waveforms", unit="clip", disable=not progress, leave=False)]


def tile_to(wave: np.ndarray, samples: int) -> np.ndarray:
    """``wave`` repeated until it holds at least ``samples`` samples (unchanged when long enough)."""
    if len(wave) == 0:
        raise DataError("an empty waveform cannot be tiled")
    if len(wave) >= samples:
        return wave
    return np.tile(wave, -(-samples // len(wave)))


def waveform_windows(wave: np.ndarray, samples: int) -> np.ndarray:
    """``(n_windows, samples)`` crops of one clip for extraction (see the module docstring)."""
    wave = np.asarray(wave, dtype=np.float32)
    if len(wave) <= samples:
        return tile_to(wave, samples)[None, :samples]
    starts = list(range(0, len(wave) - samples + 1, samples))
    if starts[-1] + samples < len(wave):
        starts.append(len(wave) - samples)
    return np.stack([wave[s:s + samples] for s in starts])


class CropDataset(Dataset):
    """Fixed-length crops of in-memory waveforms with their class labels.

    The clips (each tiled to at least one crop) are concatenated into one array; an epoch is a
    table of start samples, so a batch is one NumPy gather. Implements ``__getitems__`` (batched
    fetching), ``set_epoch``, ``input_stats`` and is picklable, like
    :class:`~hybrid_asd.extractor.dataset.PatchDataset`.

    Parameters
    ----------
    waves: 1-D waveforms of the clips.
    labels: class id of each clip.
    samples: crop length (the network's input length).
    repeats: per-clip repeat factor (target-domain oversampling); default 1.
    random: random offsets (training) or every clip's first crop (validation).
    seed: seeds the per-epoch offsets (``numpy.random.default_rng([seed, epoch])``).
    """

    def __init__(
        self,
        waves: Sequence[np.ndarray],
        labels: np.ndarray,
        samples: int,
        *,
        repeats: np.ndarray | None = None,
        random: bool = True,
        seed: int = 0,
    ):
        if len(waves) == 0:
            raise DataError("no training clips")
        self.samples = int(samples)
        tiled = [tile_to(np.asarray(w, dtype=np.float32), self.samples) for w in waves]
        lengths = np.asarray([len(w) for w in tiled], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.spans = lengths - self.samples + 1  # valid start positions per clip
        self.data = np.ascontiguousarray(np.concatenate(tiled), dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.repeats = np.ones(len(waves), dtype=np.int64) if repeats is None else np.asarray(repeats, np.int64)
        self.clip_of_item = np.repeat(np.arange(len(waves)), self.repeats)
        self.random = bool(random)
        self.seed = int(seed)
        self.starts = np.zeros(0, dtype=np.int64)
        self.noise: NoiseMixer | None = None
        self.in_channels = 1
        self.epoch = 0
        self.set_epoch(0)

    def add_noise(self, mixer: NoiseMixer) -> None:
        """Mix background noise into the crops of every batch (``data.supplemental``)."""
        if not mixer.waves:
            raise DataError("waveform crops need a NoiseMixer built from waveforms (waves=True)")
        self.noise = mixer

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's crop offsets (training) or take every clip's first crop."""
        self.epoch = int(epoch)
        shift = np.zeros(len(self.clip_of_item), dtype=np.int64)
        if self.random:
            rng = np.random.default_rng([self.seed, int(epoch)])
            shift = rng.integers(0, self.spans[self.clip_of_item])
        self.starts = self.offsets[self.clip_of_item] + shift

    def input_stats(self) -> tuple[float, float]:
        """Global mean and standard deviation of the samples (for input standardisation)."""
        return float(self.data.mean(dtype=np.float64)), float(self.data.std(dtype=np.float64))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        crops = np.lib.stride_tricks.sliding_window_view(self.data, self.samples)[self.starts[idx]][:, None]
        if self.noise is not None:
            crops = self.noise.mix_waves(crops, batch_noise_rng(self.seed, self.epoch, idx))
        x = torch.from_numpy(np.ascontiguousarray(crops))  # (B, 1, samples)
        return x, torch.from_numpy(self.labels[self.clip_of_item[idx]])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]
