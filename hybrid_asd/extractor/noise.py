"""Background-noise augmentation of the extractor's training windows with noise-only recordings
(DCASE 2025+ supplemental data; ``data.supplemental.use: noise | both``).

The extractor trains on cached log-mels, so noise is mixed where the windows are: in the mel power
domain. A log-mel value ``v`` (``20 / power * log10(mel)``) is the power ``10 ** (v / 10)``; a window
``x`` and a noise window ``n`` scaled by ``g`` mix to ``10 * log10(10 ** (x / 10) + g * 10 ** (n / 10))``,
the expected log-mel of the sum of two independent signals (exact in expectation for power 2: the
cross terms of the two spectra average to zero). ``g`` sets the window's signal-to-noise ratio to a
value drawn uniformly from ``snr_db``: ``g = P_x / (P_n * 10 ** (snr / 10))`` with ``P`` the mean power
of the window. Each window is mixed with probability ``prob``; the noise window is a random stretch of
the noise clips (one concatenated time line, tiled when shorter than a window). Waveform input
(``extractor.input: waveform``) mixes the waveforms themselves (:meth:`NoiseMixer.mix_waves`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from hybrid_asd.errors import DataError

__all__ = ["NoiseMixer"]


class NoiseMixer:
    """Mixes noise windows into batches of log-mel windows ``(B, channels, n_mels, frames)`` (or of
    waveform crops ``(B, 1, samples)`` when built from waveforms)."""

    def __init__(self, noise: Sequence[np.ndarray], snr_db: tuple[float, float], prob: float, *, waves: bool = False):
        if not len(noise):
            raise DataError("noise augmentation: no noise clips (data.supplemental.noise_kinds found none)")
        lo, hi = float(snr_db[0]), float(snr_db[1])
        if hi < lo:
            raise DataError(f"noise augmentation: snr_db range [{lo}, {hi}] is empty")
        self.snr_db, self.prob, self.waves = (lo, hi), float(prob), bool(waves)
        if waves:
            self.data = np.concatenate([np.asarray(w, dtype=np.float32).reshape(-1) for w in noise])
            self.in_channels, self.n_mels = 1, 0
        else:
            planes = [m if m.ndim == 3 else m[None] for m in noise]
            shapes = {p.shape[:2] for p in planes}
            if len(shapes) != 1:
                raise DataError(f"noise log-mels of different shapes {sorted(shapes)}")
            self.in_channels, self.n_mels = shapes.pop()
            # powers, once: mixing adds powers
            self.data = np.concatenate([10.0 ** (p.astype(np.float64) / 10.0) for p in planes], axis=-1)

    def _noise_windows(self, length: int, count: int, rng: np.random.Generator) -> np.ndarray:
        total = self.data.shape[-1]
        line = self.data if total >= length else np.tile(self.data, [1] * (self.data.ndim - 1) + [-(-length // total)])
        starts = rng.integers(0, line.shape[-1] - length + 1, size=count)
        return np.stack([line[..., s:s + length] for s in starts])

    def _draws(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        chosen = np.flatnonzero(rng.random(n) < self.prob)
        snr = rng.uniform(self.snr_db[0], self.snr_db[1], size=len(chosen))
        return chosen, snr

    def mix(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy copy of log-mel windows ``(B, channels, n_mels, frames)`` (float32)."""
        chosen, snr = self._draws(len(batch), rng)
        if not len(chosen):
            return batch
        out = np.array(batch, dtype=np.float32, copy=True)
        noise = self._noise_windows(batch.shape[-1], len(chosen), rng)  # powers
        signal = 10.0 ** (out[chosen].astype(np.float64) / 10.0)
        axes = tuple(range(1, signal.ndim))
        gain = signal.mean(axis=axes) / (noise.mean(axis=axes) * 10.0 ** (snr / 10.0))
        mixed = signal + gain.reshape(-1, *([1] * len(axes))) * noise
        out[chosen] = (10.0 * np.log10(mixed)).astype(np.float32)
        return out

    def mix_waves(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy copy of waveform crops ``(B, 1, samples)``: ``x + g n`` with the drawn SNR."""
        chosen, snr = self._draws(len(batch), rng)
        if not len(chosen):
            return batch
        out = np.array(batch, dtype=np.float32, copy=True)
        noise = self._noise_windows(batch.shape[-1], len(chosen), rng).astype(np.float64)
        signal = out[chosen].reshape(len(chosen), -1).astype(np.float64)
        p_signal = np.mean(signal ** 2, axis=1)
        p_noise = np.maximum(np.mean(noise ** 2, axis=1), 1e-20)
        gain = np.sqrt(p_signal / (p_noise * 10.0 ** (snr / 10.0)))
        mixed = signal + gain[:, None] * noise
        out[chosen] = mixed.reshape(out[chosen].shape).astype(np.float32)
        return out
