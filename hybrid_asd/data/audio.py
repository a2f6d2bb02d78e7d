"""Audio loading: one channel of a WAV file (or their mean, or all of them: ``data.channel``,
:mod:`hybrid_asd.data.channels`) as float32 at the configured sample rate.

soundfile (libsndfile) reads PCM and float WAV, including the 8-channel WAVE_FORMAT_EXTENSIBLE
files of MIMII that Python's ``wave`` cannot open; soxr resamples. Every failure on bad input
raises :class:`~hybrid_asd.errors.DataError` naming the file.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from hybrid_asd.data.channels import ChannelChoice, channel_used, select_channels
from hybrid_asd.errors import DataError

log = logging.getLogger(__name__)

# libsndfile logs "data : <declared> (should be <present>)" when a WAV header promises more
# sample bytes than the file holds. It still opens such files (frames = what is present),
# so we read its log to refuse truncated files instead of silently loading a partial clip.
_DATA_SIZE_MISMATCH = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Streaming writers leave the data size at 0 or 0xFFFFFFFF ("unknown"); that is not truncation.
_UNKNOWN_DATA_SIZES = (0, 0xFFFFFFFF)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise DataError(f"audio file not found: {path}")
    if not path.is_file():
        raise DataError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")


def _open_info(path: Path) -> Any:
    """``soundfile.info`` with every problem turned into a DataError naming the file."""
    _check_readable(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:  # LibsndfileError subclasses RuntimeError
        raise DataError(f"{path}: not a readable audio file ({exc})") from exc
    if info.frames <= 0:
        raise DataError(f"{path}: audio file holds no samples (0 frames)")
    if info.channels <= 0:
        raise DataError(f"{path}: audio file reports {info.channels} channels")
    match = _DATA_SIZE_MISMATCH.search(info.extra_info or "")
    if match:
        declared, present = int(match[1]), int(match[2])
        if declared > present and declared not in _UNKNOWN_DATA_SIZES:
            raise DataError(
                f"{path}: truncated audio file (header declares {declared} data bytes, "
                f"only {present} present)"
            )
    return info


def audio_info(path: str | Path) -> dict[str, Any]:
    """Header facts of an audio file, validated as :func:`load_audio` would.

    Returns ``{"sample_rate", "channels", "frames", "duration", "subtype", "format"}``.
    """
    path = Path(path)
    info = _open_info(path)
    return {
        "sample_rate": int(info.samplerate),
        "channels": int(info.channels),
        "frames": int(info.frames),
        "duration": float(info.frames) / float(info.samplerate),
        "subtype": str(info.subtype),
        "format": str(info.format),
    }


_CHANNEL_NOTES: set[tuple[int, ChannelChoice]] = set()


def note_channel(path: Path, channels: int, channel: ChannelChoice) -> None:
    """Say once per process (per channel count and setting) what multi-channel files give."""
    if (channels, channel) in _CHANNEL_NOTES:
        return
    _CHANNEL_NOTES.add((channels, channel))
    mimii = path.parent.name in ("normal", "abnormal")  # MIMII's 8-channel array recordings: expected
    # an index drops the other channels silently; mean/all use every channel (an explicit choice)
    quiet = mimii or channel in ("mean", "all")
    (log.info if quiet else log.warning)(
        "%s has %d channels: %s (data.channel; said once for all such files)", path, channels,
        channel_used(channel, channels))


def fit_length(signal: np.ndarray, length: int) -> np.ndarray:
    """Crop to ``length`` samples or zero-pad at the end (the last axis: ``(channels, n)`` works too)."""
    if signal.shape[-1] >= length:
        return signal[..., :length]
    return np.pad(signal, [(0, 0)] * (signal.ndim - 1) + [(0, length - signal.shape[-1])])


def resample_signal(signal: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling with soxr (high quality); 1-D or ``(channels, n)``."""
    if signal.ndim == 2:  # soxr takes (frames, channels)
        out = soxr.resample(np.ascontiguousarray(signal.T), orig_rate, target_rate, quality="HQ")
        return np.ascontiguousarray(np.asarray(out, dtype=np.float32).T)
    return np.asarray(soxr.resample(signal, orig_rate, target_rate, quality="HQ"), dtype=np.float32)


def load_audio(
    path: str | Path,
    sample_rate: int = 16000,
    channel: ChannelChoice = 0,
    duration: float | None = None,
    resample: bool = True,
) -> np.ndarray:
    """Load one channel of an audio file as a float32 1-D array in [-1, 1] (``channel="all"``: every
    channel, ``(channels, n)``).

    Args:
        path: WAV (or other libsndfile-readable) file.
        sample_rate: rate of the returned signal.
        channel: channel taken from multichannel files (0-based), ``"mean"`` (the mean of all
            channels) or ``"all"`` (see :mod:`hybrid_asd.data.channels`).
        duration: seconds; the signal is zero-padded or cropped to ``round(duration * sample_rate)``
            samples. ``None`` keeps the file's length.
        resample: resample files at another rate (soxr); when false such files raise DataError.

    Raises:
        DataError: missing, empty, truncated or non-audio file, a channel out of range, non-finite
            samples, or a sample-rate mismatch with ``resample=False``; the message names the file.
    """
    path = Path(path)
    info = _open_info(path)
    file_rate = int(info.samplerate)
    if isinstance(channel, int) and not isinstance(channel, bool) and not 0 <= channel < info.channels:
        raise DataError(f"{path}: channel {channel} requested but the file has {info.channels} channel(s)")
    if file_rate != sample_rate and not resample:
        raise DataError(
            f"{path}: sample rate {file_rate} Hz differs from the configured {sample_rate} Hz "
            "(resampling is off)"
        )
    length = None if duration is None else int(round(duration * sample_rate))
    # Read only what a crop keeps when no resampling is involved (12 s ToyCar -> 10 s, etc.).
    stop = length if (length is not None and file_rate == sample_rate) else None
    try:
        data, _ = sf.read(str(path), dtype="float32", always_2d=True, stop=stop)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DataError(f"{path}: failed to read audio ({exc})") from exc
    if info.channels > 1:
        note_channel(path, info.channels, channel)
    signal = select_channels(data, channel, path)
    if not np.all(np.isfinite(signal)):
        raise DataError(f"{path}: audio holds NaN or infinite samples")
    if file_rate != sample_rate:
        log.debug("resampling %s from %d to %d Hz", path, file_rate, sample_rate)
        signal = resample_signal(signal, file_rate, sample_rate)
    if length is not None:
        signal = fit_length(signal, length)
    # PCM is in range by construction; float WAV may exceed it and resampling may overshoot slightly.
    return np.clip(signal, -1.0, 1.0, out=signal).astype(np.float32, copy=False)

