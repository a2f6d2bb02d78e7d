"""Signal building blocks of the synthetic machine sounds (float64 numpy, deterministic).

Everything here is plain sample-by-sample arithmetic, ``np.cumsum`` and ``scipy.signal.sosfilt``:
no FFT sizes, no threads, so one random generator gives the same samples on every machine.
Harmonic series are read from a one-period wavetable (see :func:`harmonics`).
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from scipy import signal

TWO_PI = 2.0 * np.pi

# Paul Kellet's "economy" pinking filter (about -3 dB/octave from 20 Hz up); a hand-written
# constant because no installed library ships a pink-noise generator with a fixed seed contract.
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


class Ctx:
    """Per-clip rendering context: the clip's random generator, length and sample rate."""

    __slots__ = ("rng", "n", "sr")

    def __init__(self, rng: np.random.Generator, n: int, sr: int) -> None:
        self.rng = rng
        self.n = int(n)
        self.sr = int(sr)

    @property
    def t(self) -> np.ndarray:
        return np.arange(self.n) / self.sr


def db(x: float) -> float:
    """Amplitude factor of ``x`` decibels."""
    return float(10.0 ** (x / 20.0))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-30))


def slow_noise(ctx: Ctx, rate_hz: float) -> np.ndarray:
    """A smooth random curve (about unit variance): random knots every ``1/rate_hz`` s, linearly joined."""
    n_knots = int(np.ceil(ctx.n / ctx.sr * rate_hz)) + 2
    knots = ctx.rng.standard_normal(n_knots)
    return np.interp(np.arange(ctx.n) * (rate_hz / ctx.sr), np.arange(n_knots), knots)


def rate_track(ctx: Ctx, f_mean: float, wander: float = 0.003, wander_rate: float = 0.7) -> np.ndarray:
    """Instantaneous rate (Hz) that wanders slowly by ``wander`` (relative std) around ``f_mean``."""
    return f_mean * (1.0 + wander * slow_noise(ctx, wander_rate))


def phase_of(ctx: Ctx, rate: np.ndarray | float) -> np.ndarray:
    """Running phase (rad) of an instantaneous rate, starting at a random angle."""
    rate = np.broadcast_to(np.asarray(rate, dtype=np.float64), (ctx.n,))
    return ctx.rng.uniform(0.0, TWO_PI) + TWO_PI * np.cumsum(rate) / ctx.sr


def cos_k(phase: np.ndarray, k: float = 1.0, theta: float = 0.0) -> np.ndarray:
    """``cos(k * phase + theta)``."""
    return np.cos(k * phase + theta)


def harmonics(
    phase: np.ndarray,
    amps: Sequence[float],
    phases: Sequence[float] | None = None,
    first: int = 1,
    step: int = 1,
) -> np.ndarray:
    """``sum_j amps[j] * cos(k_j * phase + phases[j])`` with ``k_j = first + j * step``.

    Evaluated from a wavetable: the series is periodic in ``phase``, so one period is summed
    on a grid (at least 32 points per period of the highest harmonic) and read back by linear
    interpolation at ``phase mod 2 pi``. That costs the same for any number of harmonics; the
    interpolation error is below -45 dB of each harmonic's own level.
    """
    amps = np.asarray(amps, dtype=np.float64)
    if amps.size == 0:
        return np.zeros(phase.shape[0])
    ks = first + step * np.arange(amps.size)
    phis = np.zeros(amps.size) if phases is None else np.asarray(phases, dtype=np.float64)
    size = _TABLE_MIN
    while size < 32 * ks[-1]:
        size *= 2
    grid = np.arange(size + 1) * (TWO_PI / size)
    table = np.zeros(size + 1)
    for k, a, ph in zip(ks, amps, phis):
        if a != 0.0:
            table += a * np.cos(k * grid + ph)
    return np.interp(np.mod(phase, TWO_PI), grid, table)


_TABLE_MIN = 512


def random_phases(ctx: Ctx, k: int) -> np.ndarray:
    return ctx.rng.uniform(0.0, TWO_PI, size=k)


def jitter_db(ctx: Ctx, values: Sequence[float], std_db: float) -> np.ndarray:
    """Multiply each value by an independent random gain of ``std_db`` dB standard deviation."""
    values = np.asarray(values, dtype=np.float64)
    return values * 10.0 ** (ctx.rng.normal(0.0, std_db, size=values.shape) / 20.0)


def white(ctx: Ctx) -> np.ndarray:
    """Unit-variance white noise; uniform, not Gaussian (half the cost, and any filtering
    makes it Gaussian anyway)."""
    return (ctx.rng.random(ctx.n) - 0.5) * np.sqrt(12.0)


def colored_noise(ctx: Ctx, color: str = "white") -> np.ndarray:
    """Unit-RMS noise: ``white``, ``pink`` (-3 dB/oct) or ``brown`` (-6 dB/oct, leaky)."""
    x = white(ctx)
    if color == "pink":
        x = signal.lfilter(_PINK_B, _PINK_A, x)
    elif color == "brown":
        x = signal.lfilter([1.0], [1.0, -0.995], x)
        x -= x.mean()
    elif color != "white":
        raise ValueError(f"unknown noise colour {color!r}")
    return x / rms(x)


def peak_ba(freq: float, q: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order resonance (peak gain 1 at ``freq``); its ring decays with time constant q/(pi f)."""
    freq = float(np.clip(freq, 20.0, 0.45 * sr))
    return signal.iirpeak(freq, max(float(q), 0.5), fs=sr)


@functools.lru_cache(maxsize=64)
def band_sos(lo: float | None, hi: float | None, sr: int, order: int = 2) -> np.ndarray:
    """Butterworth band-pass (or high-/low-pass when an edge is None)."""
    nyq_guard = 0.45 * sr
    if lo is None:
        return signal.butter(order, min(hi, nyq_guard), btype="lowpass", fs=sr, output="sos")
    if hi is None or hi >= nyq_guard:
        return signal.butter(order, lo, btype="highpass", fs=sr, output="sos")
    return signal.butter(order, [lo, hi], btype="bandpass", fs=sr, output="sos")


def resonate(x: np.ndarray, resonances: Sequence[Sequence[float]], sr: int, ring: bool = False) -> np.ndarray:
    """Sum of ``x`` passed through each resonance ``(freq, q, gain)``.

    ``ring=False``: unity gain at the peak (for noise: the mode passes its band unchanged).
    ``ring=True``: a unit impulse starts a ring of amplitude ``gain``, whatever the mode's
    frequency and Q (for impacts, whose strength should not depend on the mode they excite).
    """
    out = np.zeros_like(x)
    for freq, q, gain in resonances:
        if gain != 0.0:
            b, a = peak_ba(freq, q, sr)
            scale = gain / b[0] if ring else gain
            out += scale * signal.lfilter(b, a, x)
    return out


def resonant_noise(
    ctx: Ctx,
    resonances: Sequence[Sequence[float]],
    color: str = "white",
    floor: float = 0.0,
    floor_color: str = "pink",
) -> np.ndarray:
    """Broadband noise through parallel resonances, plus an optional un-resonated ``floor``.

    The model of structure-borne and aerodynamic noise: a body's modes, excited by turbulence
    or friction, colour the broadband noise with a few peaks.
    """
    x = colored_noise(ctx, color)
    out = resonate(x, resonances, ctx.sr)
    if floor > 0.0:
        out += floor * colored_noise(ctx, floor_color)
    return out


def jitter_resonances(ctx: Ctx, resonances: Sequence[Sequence[float]], f_rel: float, g_db: float) -> list:
    """Per-clip copies of ``(freq, q, gain)`` with small random frequency and gain changes."""
    out = []
    for freq, q, gain in resonances:
        out.append(
            (freq * (1.0 + f_rel * ctx.rng.standard_normal()), q, gain * db(g_db * ctx.rng.standard_normal()))
        )
    return out


def impulses(ctx: Ctx, times: np.ndarray, amps: np.ndarray | float) -> np.ndarray:
    """A train of unit impulses at ``times`` (s) scaled by ``amps``, for exciting resonances."""
    x = np.zeros(ctx.n)
    idx = np.round(np.asarray(times) * ctx.sr).astype(np.int64)
    amps = np.broadcast_to(np.asarray(amps, dtype=np.float64), idx.shape)
    keep = (idx >= 0) & (idx < ctx.n)
    np.add.at(x, idx[keep], amps[keep])
    return x


def crossing_times(ctx: Ctx, phase: np.ndarray, per_cycle: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Times (s) where ``phase`` passes ``offset + 2*pi*k/per_cycle``: once-per-revolution events."""
    cycles = (phase - offset) * (per_cycle / TWO_PI)
    first, last = np.ceil(cycles[0]), np.floor(cycles[-1])
    if last < first:
        return np.zeros(0)
    targets = np.arange(first, last + 1.0)
    return np.searchsorted(cycles, targets).astype(np.float64) / ctx.sr


def poisson_times(ctx: Ctx, rate_hz: float) -> np.ndarray:
    """Event times of a Poisson process of ``rate_hz`` over the clip."""
    duration = ctx.n / ctx.sr
    count = ctx.rng.poisson(rate_hz * duration)
    return np.sort(ctx.rng.uniform(0.0, duration, size=count))


def ring_events(
    ctx: Ctx,
    times: np.ndarray,
    amps: np.ndarray | float,
    resonances: Sequence[Sequence[float]],
    click: float = 0.0,
) -> np.ndarray:
    """Impacts: impulses at ``times`` ringing through ``resonances`` (plus a dry ``click`` share).

    Each impact of amplitude ``a`` starts a ring of about ``a * gain`` in every mode.
    """
    x = impulses(ctx, times, amps)
    out = resonate(x, resonances, ctx.sr, ring=True)
    if click > 0.0:
        out += click * signal.sosfilt(band_sos(1500.0, None, ctx.sr), x)
    return out


def smooth_gate(ctx: Ctx, on: np.ndarray, ramp_s: float) -> np.ndarray:
    """A 0/1 gate smoothed by a one-pole filter of time constant ``ramp_s`` (forward and back)."""
    alpha = np.exp(-1.0 / max(ramp_s * ctx.sr, 1.0))
    g = signal.lfilter([1.0 - alpha], [1.0, -alpha], on.astype(np.float64))
    return signal.lfilter([1.0 - alpha], [1.0, -alpha], g[::-1])[::-1]


def intervals_to_gate(ctx: Ctx, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Boolean array that is True inside each ``[start, end)`` interval (s)."""
    delta = np.zeros(ctx.n + 1)
    s = np.clip(np.round(np.asarray(starts) * ctx.sr).astype(np.int64), 0, ctx.n)
    e = np.clip(np.round(np.asarray(ends) * ctx.sr).astype(np.int64), 0, ctx.n)
    np.add.at(delta, s, 1.0)
    np.add.at(delta, e, -1.0)
    return np.cumsum(delta[:-1]) > 0.5


def peaking_sos(bands: Sequence[Sequence[float]], sr: int) -> np.ndarray:
    """Second-order sections of a chain of peaking equalisers ``(freq, gain_db, q)``.

    The model of a transfer path (mounting, structure, microphone position): gentle boosts and
    dips of a few dB that colour a sound without adding energy elsewhere. Written out from the
    Audio EQ Cookbook (R. Bristow-Johnson) because scipy's ``iirpeak`` is a band-pass with no
    gain parameter, not an equaliser.
    """
    rows = []
    for freq, gain_db, q in bands:
        w0 = TWO_PI * float(np.clip(freq, 20.0, 0.45 * sr)) / sr
        amp = 10.0 ** (float(gain_db) / 40.0)
        alpha = np.sin(w0) / (2.0 * max(float(q), 0.1))
        b = np.array([1.0 + alpha * amp, -2.0 * np.cos(w0), 1.0 - alpha * amp])
        a = np.array([1.0 + alpha / amp, -2.0 * np.cos(w0), 1.0 - alpha / amp])
        rows.append(np.concatenate([b / a[0], a / a[0]]))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def equalise(x: np.ndarray, bands: Sequence[Sequence[float]], sr: int) -> np.ndarray:
    """``x`` through the peaking equalisers ``bands`` (see :func:`peaking_sos`)."""
    if len(bands) == 0:
        return x
    return signal.sosfilt(peaking_sos(bands, sr), x)


def mains_hum(ctx: Ctx, mains_hz: float, amps: Sequence[float]) -> np.ndarray:
    """Electrical hum: harmonics of the (steady) mains frequency."""
    phase = TWO_PI * mains_hz * np.arange(ctx.n) / ctx.sr
    return harmonics(phase, amps, random_phases(ctx, len(amps)))
