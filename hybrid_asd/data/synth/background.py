"""Factory background noise: the environments that machine sounds are mixed into.

Each environment ("noise type", the ``noise`` attribute of a clip) is coloured broadband noise,
mains hum and random impacts in its own proportions, so that a change of environment (one kind
of domain shift) changes the spectrum and the texture of the background, not only its level.
Every call returns a unit-RMS signal; the caller sets its level from the section's SNR.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from hybrid_asd.data.synth import dsp
from hybrid_asd.data.synth.dsp import Ctx

# Environment letter -> description (written into synthetic.json and docs/synthetic.md).
NOISE_TYPES: dict[str, str] = {
    "A": "factory hall: pink noise, 50 Hz mains hum, sparse distant impacts",
    "B": "workshop: brown noise, a distant machine's tones, frequent hammer-like impacts",
    "C": "ventilation: band-limited hiss (0.4-6 kHz), 60 Hz hum",
    "D": "conveyor line: pink noise with a slow rhythmic swell, rattling parts",
}


def render_background(ctx: Ctx, noise_type: str) -> np.ndarray:
    """Unit-RMS background of one environment, with per-clip random details.

    Besides the environment's own texture, every clip gets what a real factory adds and nobody
    logs: other machines running nearby (harmonic series at random rates, some switching on or off
    during the clip), the listening position's colouring of the hall's sound (random gentle
    equaliser bands) and a slow level drift. These vary from clip to clip in every section alike.
    """
    try:
        render = _RENDERERS[noise_type]
    except KeyError:
        raise ValueError(f"unknown noise type {noise_type!r}; known: {sorted(_RENDERERS)}") from None
    x = render(ctx)
    x = x / dsp.rms(x) + _other_machines(ctx)
    x = dsp.equalise(x, _room_colouring(ctx), ctx.sr) * (1.0 + 0.15 * dsp.slow_noise(ctx, 0.3))
    return x / dsp.rms(x)


def _other_machines(ctx: Ctx) -> np.ndarray:
    """0-3 machines elsewhere in the hall: harmonic series at random rates and levels (-16 to -4 dB)."""
    rng = ctx.rng
    out = np.zeros(ctx.n)
    for _ in range(int(rng.integers(0, 4))):
        f0 = float(np.exp(rng.uniform(np.log(40.0), np.log(600.0))))
        k = int(rng.integers(3, 9))
        amps = rng.uniform(0.3, 0.7) ** np.arange(k) * rng.lognormal(0.0, 0.5, size=k)
        phase = dsp.phase_of(ctx, dsp.rate_track(ctx, f0, wander=0.004))
        tone = dsp.harmonics(phase, amps, dsp.random_phases(ctx, k))
        tone *= 10.0 ** (rng.uniform(-16.0, -4.0) / 20.0) / dsp.rms(tone)
        if rng.random() < 0.3:  # switched on or off during the clip
            edge = rng.uniform(0.0, ctx.n / ctx.sr)
            on = ctx.t >= edge if rng.random() < 0.5 else ctx.t < edge
            tone *= dsp.smooth_gate(ctx, on, 0.05)
        out += tone
    return out


def _room_colouring(ctx: Ctx) -> list:
    """Three gentle random equaliser bands (+-3 dB): the hall heard from this spot at this time."""
    rng = ctx.rng
    freqs = np.exp(rng.uniform(np.log(100.0), np.log(7000.0), size=3))
    return [(float(f), float(rng.uniform(-3.0, 3.0)), float(rng.uniform(0.5, 2.0))) for f in freqs]


def _factory_hall(ctx: Ctx) -> np.ndarray:
    rng = ctx.rng
    bed = dsp.colored_noise(ctx, "pink")
    hum = dsp.mains_hum(ctx, 50.0, dsp.jitter_db(ctx, [0.25, 0.12, 0.08, 0.04], 2.0))
    times = dsp.poisson_times(ctx, 0.6)
    amps = rng.lognormal(0.0, 0.5, size=times.shape)
    modes = [(rng.uniform(300, 900), 8.0, 1.2), (rng.uniform(1500, 3000), 12.0, 0.6)]
    impacts = dsp.ring_events(ctx, times, amps, modes)
    return bed + hum + 0.8 * impacts


def _workshop(ctx: Ctx) -> np.ndarray:
    rng = ctx.rng
    bed = 0.8 * dsp.colored_noise(ctx, "brown") + 0.35 * dsp.colored_noise(ctx, "pink")
    f_other = rng.uniform(90.0, 260.0)
    other_phase = dsp.phase_of(ctx, dsp.rate_track(ctx, f_other, wander=0.01))
    other = dsp.harmonics(other_phase, dsp.jitter_db(ctx, [0.3, 0.2, 0.12, 0.08, 0.05], 3.0), dsp.random_phases(ctx, 5))
    times = dsp.poisson_times(ctx, 2.5)
    amps = rng.lognormal(0.0, 0.6, size=times.shape)
    modes = [(rng.uniform(600, 1400), 15.0, 1.0), (rng.uniform(2500, 5000), 20.0, 0.8)]
    impacts = dsp.ring_events(ctx, times, amps, modes, click=0.3)
    return bed + other + 2.0 * impacts


def _ventilation(ctx: Ctx) -> np.ndarray:
    hiss = np.asarray(
        signal.sosfilt(dsp.band_sos(400.0, 6000.0, ctx.sr), dsp.colored_noise(ctx, "white"))
    )
    hiss /= dsp.rms(hiss)
    swirl = 1.0 + 0.15 * dsp.slow_noise(ctx, 1.5)
    hum = dsp.mains_hum(ctx, 60.0, dsp.jitter_db(ctx, [0.2, 0.1, 0.1], 2.0))
    return hiss * swirl + 0.3 * dsp.colored_noise(ctx, "pink") + hum


def _conveyor(ctx: Ctx) -> np.ndarray:
    rng = ctx.rng
    swell_rate = rng.uniform(0.4, 1.2)
    swell = 1.0 + 0.35 * np.cos(dsp.phase_of(ctx, swell_rate))
    bed = dsp.colored_noise(ctx, "pink") * swell
    times = dsp.poisson_times(ctx, 12.0)
    amps = rng.lognormal(-1.0, 0.5, size=times.shape)
    modes = [(rng.uniform(1800, 3500), 25.0, 1.0), (rng.uniform(4000, 6500), 30.0, 0.7)]
    rattle = dsp.ring_events(ctx, times, amps, modes)
    return bed + 0.6 * rattle


_RENDERERS = {"A": _factory_hall, "B": _workshop, "C": _ventilation, "D": _conveyor}
