"""Log-mel front end of the official DCASE Task 2 baselines, in torch (batched, CPU or CUDA).

The official baselines (DCASE 2020-2022 Task 2, AE and MobileNetV2) compute

    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop_length,
                                         n_mels=n_mels, power=power)
    logmel = 20.0 / power * log10(mel + sys.float_info.epsilon)

i.e. a centred STFT with a periodic Hann window, ``|STFT| ** power``, a Slaney-scale mel
filterbank with Slaney ("constant energy per band") normalisation, then decibels.
:class:`LogMel` reproduces this with ``torch.stft`` (tested against librosa to 1e-3 dB on
real clips). Padding: the baselines ran librosa 0.6-0.8, whose centred STFT padded with
``pad_mode="reflect"``; librosa 0.10 changed its default to ``"constant"`` (zeros). We default to
``"reflect"`` (the baselines' features) and support ``"constant"``.

The 2021 baselines write ``log10(np.maximum(mel, eps))`` and the 2020 one ``log10(mel + eps)``;
the two agree except for mel energies within a few ``eps`` (2.2e-16) of zero, where both sit
near -156 dB (power 2). We use ``mel + eps``.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from hybrid_asd.features.settings import PAD_MODES, FeatureSettings

log = logging.getLogger(__name__)

EPS = sys.float_info.epsilon
# Keys of the ``features`` config section that parameterise the front end (the rest,
# e.g. patch sizes or the cache folder, belong to other parts of the package).
FRONT_END_KEYS = ("n_fft", "hop_length", "n_mels", "power", "fmin", "fmax", "center", "pad_mode")


# The Slaney mel scale and filterbank, hand-written in NumPy: torch has no mel filterbank
# without torchaudio, which is not a dependency (it imports only beside one torch version),
# and librosa is a test-only dependency (it pulls numba/llvmlite). The formulas follow
# librosa.filters.mel(htk=False, norm="slaney") line by line.
_F_SP = 200.0 / 3.0  # Hz per mel in the linear region
_MIN_LOG_HZ = 1000.0  # start of the log region
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0  # mels per log-Hz step in the log region


def hz_to_mel_slaney(freqs: np.ndarray) -> np.ndarray:
    """Slaney (Auditory Toolbox) mel scale: linear below 1 kHz, logarithmic above."""
    freqs = np.asarray(freqs, dtype=np.float64)
    mels = freqs / _F_SP
    log_region = freqs >= _MIN_LOG_HZ
    mels = np.where(
        log_region, _MIN_LOG_MEL + np.log(np.maximum(freqs, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mels
    )
    return mels


def mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel_slaney`."""
    mels = np.asarray(mels, dtype=np.float64)
    freqs = _F_SP * mels
    log_region = mels >= _MIN_LOG_MEL
    return np.where(log_region, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels - _MIN_LOG_MEL)), freqs)


def slaney_mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular Slaney mel filters, ``(n_mels, 1 + n_fft // 2)`` float32, as librosa's
    ``filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm="slaney")``."""
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    if not 0.0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(
            f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin}, fmax={fmax}, "
            f"sample_rate={sample_rate}"
        )
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    # n_mels + 2 band edges, uniformly spaced on the mel scale.
    edges = mel_to_hz_slaney(
        np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), n_mels + 2)
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # Slaney norm: equal area per band
    if np.any(weights.max(axis=1) == 0.0):
        log.warning(
            "empty mel filters for sample_rate=%s n_fft=%s n_mels=%s fmin=%s fmax=%s; "
            "some bands will be constant at the floor value",
            sample_rate, n_fft, n_mels, fmin, fmax,
        )
    return weights.astype(np.float32)


class LogMel(nn.Module):
    """Log-mel spectrogram (dB) of the official DCASE Task 2 baselines.

    Input: waveform tensor ``(..., L)`` (e.g. ``(B, L)`` or ``(L,)``), float, in [-1, 1] as
    ``librosa.load`` returns it. Output: ``(..., n_mels, T)`` with ``T = 1 + L // hop_length``
    when ``center`` (313 frames for a 10 s clip at 16 kHz). float64 input is computed in
    float64, anything else in float32. The filterbank and window are buffers, so
    ``.to(device)`` moves them.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 512,
        n_mels: int = 128,
        power: float = 2.0,
        fmin: float = 0.0,
        fmax: float | None = None,
        center: bool = True,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        if power <= 0:
            raise ValueError(f"power must be positive, got {power}")
        if hop_length <= 0 or n_fft <= 0 or n_mels <= 0:
            raise ValueError(
                f"n_fft, hop_length and n_mels must be positive, got {n_fft}, {hop_length}, {n_mels}"
            )
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.power = float(power)
        self.fmin = float(fmin)
        self.fmax = None if fmax is None else float(fmax)
        self.center = bool(center)
        self.pad_mode = pad_mode
        fb = slaney_mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax)
        # Not persistent: both are functions of the hyperparameters, so a state_dict stays empty.
        self.register_buffer("mel_fb", torch.from_numpy(fb), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)

    @classmethod
    def from_config(cls, features: FeatureSettings | Mapping[str, Any], sample_rate: int) -> "LogMel":
        """Build from the ``features`` config section (a mapping is validated into one, missing keys
        taking their defaults); keys other than front-end keys are ignored."""
        features = FeatureSettings.parse(features, where="features")
        return cls(sample_rate=sample_rate, **{k: getattr(features, k) for k in FRONT_END_KEYS})

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
            f"n_mels={self.n_mels}, power={self.power}, fmin={self.fmin}, fmax={self.fmax}, "
            f"center={self.center}, pad_mode={self.pad_mode!r}"
        )

    def n_frames(self, n_samples: int) -> int:
        """Number of frames T for a wave of ``n_samples`` samples."""
        if self.center:
            return 1 + n_samples // self.hop_length
        return 1 + (n_samples - self.n_fft) // self.hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if not torch.is_floating_point(wave):
            raise TypeError(f"LogMel expects a float waveform in [-1, 1], got dtype {wave.dtype}")
        self._check_length(wave.shape[-1])
        dtype = torch.float64 if wave.dtype == torch.float64 else torch.float32
        lead = wave.shape[:-1]
        flat = wave.reshape(-1, wave.shape[-1]).to(dtype)
        if flat.shape[0] == 0:  # torch.stft rejects empty batches
            return flat.new_empty((*lead, self.n_mels, self.n_frames(wave.shape[-1])))
        spec = torch.stft(
            flat,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=self.window.to(dtype),
            center=self.center,
            pad_mode=self.pad_mode,
            return_complex=True,
        )  # (N, F, T), stored frame-major: transposing gives a contiguous (N, T, F)
        spec = spec.transpose(-1, -2)
        if self.power == 2.0:
            # |X|^2 = re^2 + im^2, with one temporary (a third faster than abs().square()).
            mag = spec.real.square().addcmul_(spec.imag, spec.imag)
        elif self.power == 1.0:
            mag = spec.abs()
        else:
            mag = spec.abs().pow_(self.power)
        mel = torch.matmul(mag, self.mel_fb.to(dtype).T)  # (N, T, n_mels)
        logmel = mel.add_(EPS).log10_().mul_(20.0 / self.power).transpose(-1, -2).contiguous()
        return logmel.reshape(*lead, self.n_mels, logmel.shape[-1])

    def min_samples(self) -> int:
        """The fewest samples a waveform needs for one STFT frame."""
        # Reflect padding needs more than n_fft // 2 samples; an uncentred STFT needs one frame.
        if not self.center:
            return self.n_fft
        return self.n_fft // 2 + 1 if self.pad_mode == "reflect" else 1

    def _check_length(self, n_samples: int) -> None:
        # Reflect padding needs more than n_fft // 2 samples; an uncentred STFT needs one frame.
        if not self.center:
            minimum = self.n_fft
        else:
            minimum = self.n_fft // 2 + 1 if self.pad_mode == "reflect" else 1
        if n_samples < minimum:
            raise ValueError(
                f"waveform of {n_samples} samples is too short for n_fft={self.n_fft} "
                f"(center={self.center}): need at least {minimum}"
            )


@functools.lru_cache(maxsize=8)
def _cached_logmel(sample_rate: int, items: tuple[tuple[str, Any], ...]) -> LogMel:
    return LogMel(sample_rate=sample_rate, **dict(items))


def compute_logmel(
    wave: np.ndarray, features: FeatureSettings | Mapping[str, Any], sample_rate: int = 16000
) -> np.ndarray:
    """Log-mel ``(n_mels, T)`` float32 of one mono waveform ``(L,)`` on the CPU.

    Convenience for one-off use; for many clips use :class:`LogMel` on batches (or
    :class:`hybrid_asd.features.cache.FeatureCache`).
    """
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"compute_logmel expects a mono waveform (L,), got shape {wave.shape}")
    features = FeatureSettings.parse(features, where="features")
    items = tuple((k, getattr(features, k)) for k in FRONT_END_KEYS)
    module = _cached_logmel(int(sample_rate), items)
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)))
    return out.numpy().astype(np.float32, copy=False)
