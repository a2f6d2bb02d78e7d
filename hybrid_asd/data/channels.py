"""Which channel(s) of a multi-channel file are used: ``data.channel``.

- an index ``n`` (default 0): that channel alone;
- ``mean``: the mean of all channels (a mono downmix, as ``librosa.load(mono=True)``);
- ``all``: every channel, kept apart: the log-mel gets one plane per channel, the extractor sees
  the channels as input planes, and the inlier models' log-mel statistics/frames are computed per
  channel and concatenated.

DCASE 2026 Task 2 clips are two-channel: near microphone left (channel 0), far microphone right
(channel 1). The official baseline uses channel 0 only: its ``01_train_2026t2.sh`` sets
``mono=False`` and ``datasets/loader_common.py:file_load`` then returns ``y[0]`` of
``librosa.load(wav, sr=None, mono=False)`` (nttcslab/dcase2023_task2_baseline_ae; its README:
"In the baseline, only channel 0 (the left channel) of the stereo audio data is used"). So the
default, 0, is the baseline's choice for 2026 as it was for the mono years.
"""

from __future__ import annotations

from typing import Union

import numpy as np

from hybrid_asd.errors import DataError

__all__ = ["ChannelChoice", "BASELINE_CHANNEL", "CHANNEL_MODES", "channel_used", "describe_channel",
           "select_channels", "n_planes"]

CHANNEL_MODES = ("mean", "all")
ChannelChoice = Union[int, str]  # an index >= 0, "mean" or "all"
BASELINE_CHANNEL = 0  # the official DCASE 2026 baseline's channel (near microphone, left)


def describe_channel(choice: ChannelChoice) -> str:
    """The setting in words, for logs and the manifest."""
    if choice == "mean":
        return "data.channel = mean: the mean of all channels"
    if choice == "all":
        return "data.channel = all: every channel, one log-mel plane each"
    near = " (DCASE 2026: the near microphone; the official baseline's choice)" if choice == BASELINE_CHANNEL else \
        " (DCASE 2026: the far microphone)" if choice == 1 else ""
    return f"data.channel = {choice}: channel {choice} only{near}"


def channel_used(choice: ChannelChoice, channels: int) -> str:
    """What ``choice`` takes from a file of ``channels`` channels, in words ("channel 0 is used",
    "the mean of the 2 channels is used", ...; "channel 3 does not exist" for an index out of range)."""
    if choice == "mean":
        return f"the mean of the {channels} channels is used"
    if choice == "all":
        return f"all {channels} channels are used (one log-mel plane each)"
    if int(choice) >= channels:
        return f"channel {choice} does not exist"
    return f"channel {choice} is used"


def select_channels(data: np.ndarray, choice: ChannelChoice, path: object = "") -> np.ndarray:
    """``data`` (frames, channels) -> 1-D (an index, ``mean``) or ``(channels, frames)`` (``all``)."""
    if choice == "all":
        return np.ascontiguousarray(data.T)
    if choice == "mean":
        return np.ascontiguousarray(data.mean(axis=1, dtype=np.float64).astype(np.float32))
    if isinstance(choice, bool) or not isinstance(choice, (int, np.integer)):
        raise DataError(f"{path}: data.channel must be a channel index, 'mean' or 'all', got {choice!r}")
    if not 0 <= int(choice) < data.shape[1]:
        raise DataError(f"{path}: channel {choice} requested but the file has {data.shape[1]} channel(s)")
    return np.ascontiguousarray(data[:, int(choice)])


def n_planes(array: np.ndarray) -> int:
    """Input planes of a log-mel: 1 for ``(n_mels, T)``, C for ``(C, n_mels, T)`` (``data.channel: all``)."""
    return 1 if array.ndim == 2 else int(array.shape[0])
