"""Physically motivated sound models of the seven DCASE 2021 machine types (generator 2.x).

A machine type is one **product family**. Its model has three parts:

``platform(rng)``
    The family's shared design, drawn once per machine type and seed: base operating rate,
    blade/vane/tooth counts, harmonic profiles, the body's resonances, fault-mode frequencies.
``variant(platform, rng)``
    One section: the same design as built, mounted and worn in one installation. Resonance
    frequencies a few per cent apart, harmonic profiles 1-3 dB apart, a base rate a few per
    cent apart, slightly different modulation depths (what :attr:`MachineModel.variation`
    names). Telling sections apart therefore needs the fine spectral-temporal structure in
    which faults also show, as in the DCASE data, where sections are units of one product.
``render(ctx, p, factor, load, anomaly, severity)``
    One clip of section product ``p`` running at ``factor`` times its base rate under ``load``
    (0-6), with an optional fault of kind ``anomaly`` at ``severity`` in (0, 1]. Per-clip
    variation (speed jitter, slow speed wander, gains of harmonics, resonance drift, random
    phases, event timing) comes from ``ctx.rng``, so normal clips form a distribution.

Faults come in two families, as real machine faults do: *structural* faults change the
machine's own sound (detuned or damped resonances, changed harmonic ratios, new sidebands,
changed modulation, irregular event timing), and *additive* faults add a sound (impacts,
hiss, squeal, rattle). Their strengths are set by ``ANOMALY_GAIN`` (see docs/synthetic.md).

The returned signal has the product's natural scale: louder under load or at higher speed. The
caller applies the section's transfer path, mixes in the factory background and sets the
output level (see ``synthetic.py``).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from scipy import signal

from hybrid_asd.data.synth import dsp
from hybrid_asd.data.synth.dsp import TWO_PI, Ctx, db

Product = dict[str, Any]

# How much one section differs from the platform (see MachineModel.variant).
VARIANT_RESONANCE_STD = 0.015  # relative std of a resonance frequency (log-normal)
VARIANT_Q_STD = 0.05  # relative std of a resonance's Q
VARIANT_MODE_GAIN_DB = 1.0  # std of a resonance's gain
VARIANT_PROFILE_DB = 2.5  # std of each harmonic's level
VARIANT_RATE = 0.02  # base rates differ by up to +-2 %
VARIANT_GAIN_DB = 1.5  # std of scalar gains
VARIANT_DEPTH = 0.3  # relative std (log-normal) of modulation depths and event timings
PER_CLIP_RESONANCE_DRIFT = 0.01  # relative std of a resonance's frequency from clip to clip (temperature, fixing)
PER_CLIP_LEVEL_DB = 2.0  # std of each harmonic's level from clip to clip (turbulence, load fluctuation)
PER_CLIP_SPEED = 0.01  # relative std of the actual speed around its set point (supply, temperature, slip)
# How far a fault moves a unit's fine structure, in units of the between-section spread at severity 1
# (MachineModel.faulty_unit); chosen with the fault-design proxy on seeds 0-1 (docs/synthetic.md).
FAULT_DRIFT = 1.0
# The tonal types' own drift (generator 2.2.0): their units differ mostly in order levels (gear mesh, vane pass,
# motor and wheel orders), and a developed fault there (worn teeth or impeller, a damaged rail or axle) changes
# those levels and the housing's modes by several manufacturing tolerances. Calibrated to the real data: with 1.0
# their AE baseline scored 0.51-0.54 against the real AE's 0.587 on these types (task description, Table 1);
# with 3.0 0.588-0.613 (chosen on seeds 0-1 with the fault proxy, confirmed on seed 2; docs/synthetic.md).
TONAL_FAULT_DRIFT = 3.0
FAULT_DRIFT_PARTS = ("resonances", "profiles", "gains", "depths")


def _modes(rng: np.random.Generator, k: int, f_lo: float, f_hi: float, q_lo: float, q_hi: float) -> list:
    """``k`` resonances ``[freq, q, gain]``: log-uniform frequencies, uniform Q, log-normal gains."""
    freqs = np.sort(np.exp(rng.uniform(np.log(f_lo), np.log(f_hi), size=k)))
    qs = rng.uniform(q_lo, q_hi, size=k)
    gains = rng.lognormal(0.0, 0.5, size=k)
    return [[round(float(f), 2), round(float(q), 3), round(float(g), 4)] for f, q, g in zip(freqs, qs, gains)]


def _decay_profile(rng: np.random.Generator, k: int, first: float, r_lo: float, r_hi: float) -> list:
    """Amplitudes of ``k`` harmonics decaying geometrically, with random per-harmonic scatter."""
    r = rng.uniform(r_lo, r_hi)
    amps = first * r ** np.arange(k) * rng.lognormal(0.0, 0.4, size=k)
    return [round(float(a), 5) for a in amps]


def _rounded(x: float, step: float) -> float:
    return round(float(x) / step) * step


def detune(modes: list, rel: np.ndarray | float, q_scale: float = 1.0) -> list:
    """Resonances with frequencies times ``1 + rel`` (per mode or one value) and Q times ``q_scale``.

    The structural fault of a cracked, loosened or fouled part: its modes move and damp.
    """
    rel = np.broadcast_to(np.asarray(rel, dtype=np.float64), (len(modes),))
    return [(f * (1.0 + r), max(q * q_scale, 0.7), g) for (f, q, g), r in zip(modes, rel)]


def reshape_profile(ctx: Ctx, amps: np.ndarray, strength: float, max_db: float) -> np.ndarray:
    """Harmonic levels each changed by up to ``strength * max_db`` dB (random sign and size):
    a damaged rotor or worn teeth change the ratios of the harmonics they produce."""
    if strength <= 0.0:
        return amps
    change = strength * max_db * ctx.rng.uniform(0.4, 1.0, size=len(amps)) * ctx.rng.choice([-1.0, 1.0], size=len(amps))
    return amps * 10.0 ** (change / 20.0)


class MachineModel:
    """Base class: a machine type's platform and section sampler, renderer and fault kinds."""

    name: str = ""
    spd_unit: str = ""  # unit of the ``spd`` attribute (set point of the operating rate)
    spd_step: int = 1  # set points are multiples of this
    spd_meaning: str = ""
    load_meaning: str = ""
    anomaly_kinds: tuple[str, ...] = ()
    anomaly_meaning: dict[str, str] = {}
    # this type's own FAULT_DRIFT (None: the module's); benchmarks/fault_proxy.py overrides it for one run
    fault_drift: float | None = None
    # platform keys that differ between sections (see variant)
    variation: dict[str, tuple[str, ...]] = {"resonances": (), "profiles": (), "rates": (), "gains": (), "depths": ()}

    def platform(self, rng: np.random.Generator) -> Product:
        raise NotImplementedError

    def variant(self, platform: Product, rng: np.random.Generator, scale: float = 1.0,
                parts: tuple[str, ...] = ("resonances", "profiles", "rates", "gains", "depths")) -> Product:
        """One section's product: the platform with small per-section changes of its fine structure
        (``scale`` times the usual spread, only the ``parts`` of :attr:`variation` named)."""
        p = copy.deepcopy(platform)

        def keys(part: str) -> tuple[str, ...]:
            return self.variation.get(part, ()) if part in parts else ()

        for key in keys("resonances"):
            p[key] = [
                [
                    round(f * float(np.exp(rng.normal(0.0, scale * VARIANT_RESONANCE_STD))), 2),
                    round(q * float(np.exp(rng.normal(0.0, scale * VARIANT_Q_STD))), 3),
                    round(g * db(rng.normal(0.0, scale * VARIANT_MODE_GAIN_DB)), 4),
                ]
                for f, q, g in p[key]
            ]
        for key in keys("profiles"):
            p[key] = [round(a * db(rng.normal(0.0, scale * VARIANT_PROFILE_DB)), 5) for a in p[key]]
        for key in keys("rates"):
            value = p[key] * (1.0 + rng.uniform(-scale * VARIANT_RATE, scale * VARIANT_RATE))
            p[key] = int(_rounded(value, self.spd_step)) if key == "spd_base" else round(float(value), 4)
        for key in keys("gains"):
            p[key] = round(float(p[key]) * db(rng.normal(0.0, scale * VARIANT_GAIN_DB)), 5)
        for key in keys("depths"):
            p[key] = round(float(p[key]) * float(np.exp(rng.normal(0.0, scale * VARIANT_DEPTH))), 5)
        return p

    def render(
        self, ctx: Ctx, p: Product, factor: float, load: int, anomaly: str | None, severity: float
    ) -> np.ndarray:
        raise NotImplementedError

    def fault_gain(self, anomaly: str | None, kind: str, severity: float) -> float:
        """``severity * ANOMALY_GAIN[...]`` when ``anomaly == kind``, else 0."""
        if anomaly != kind:
            return 0.0
        return severity * ANOMALY_GAIN[self.name][kind]

    def faulty_unit(self, p: Product, rng: np.random.Generator, severity: float) -> Product:
        """The section's product as a faulty unit: besides its kind's own change (``render``), every
        fault moves the unit's fine structure (resonances, harmonic profile, gains, modulation
        depths) away from the section's, by ``FAULT_DRIFT * severity`` times the spread between two
        sections (:meth:`variant`). Worn, loosened or damaged parts change stiffness, damping and the
        balance of what excites them, so a faulty unit sounds like another unit of the product; the
        base rate is left alone (speed is the plant's set point). This is what a section-ID network's
        embedding is built to see, and why such embeddings find real faults (issue #12)."""
        drift = FAULT_DRIFT if self.fault_drift is None else self.fault_drift
        return self.variant(p, rng, scale=drift * severity, parts=FAULT_DRIFT_PARTS)


# --- shared fault mechanisms -------------------------------------------------------------------


def bearing_fault(ctx: Ctx, shaft_phase: np.ndarray, p: Product, strength: float) -> np.ndarray:
    """Outer-race bearing defect: impacts at ``bearing_ratio`` per revolution ringing a high mode.

    Impact strength is modulated once per revolution (the load zone), as in real bearing faults.
    """
    if strength <= 0.0:
        return np.zeros(ctx.n)
    times = dsp.crossing_times(ctx, shaft_phase, per_cycle=p["bearing_ratio"])
    idx = np.clip((times * ctx.sr).astype(np.int64), 0, ctx.n - 1)
    zone = 1.0 + 0.6 * np.cos(shaft_phase[idx])
    amps = strength * zone * ctx.rng.lognormal(0.0, 0.35, size=times.shape)
    return dsp.ring_events(ctx, times, amps, p["bearing_modes"], click=0.2)


def squeal(ctx: Ctx, f_lo: float, f_hi: float, strength: float) -> np.ndarray:
    """Friction squeal: a wandering tone with a few harmonics, swelling and fading."""
    if strength <= 0.0:
        return np.zeros(ctx.n)
    f0 = ctx.rng.uniform(f_lo, f_hi)
    phase = dsp.phase_of(ctx, dsp.rate_track(ctx, f0, wander=0.02, wander_rate=2.0))
    env = np.clip(0.6 + 0.6 * dsp.slow_noise(ctx, 1.5), 0.0, None)
    return strength * env * dsp.harmonics(phase, [1.0, 0.3, 0.1], dsp.random_phases(ctx, 3))


def loosened_modes(ctx: Ctx, modes: list, strength: float) -> list:
    """A loosened mounting or cracked housing: every body mode lower by up to 5 % and damped."""
    if strength <= 0.0:
        return modes
    rel = -0.05 * strength * ctx.rng.uniform(0.5, 1.0, size=len(modes))
    return detune(modes, rel, q_scale=1.0 - 0.4 * min(strength, 1.0))


def body_modes(ctx: Ctx, modes: list, strength: float = 0.0) -> list:
    """A clip's copy of a product's resonances: small drift, and the loosening fault if any."""
    return dsp.jitter_resonances(ctx, loosened_modes(ctx, modes, strength), PER_CLIP_RESONANCE_DRIFT, 0.7)


# --- rotating machines ------------------------------------------------------------------------


class Fan(MachineModel):
    name = "fan"
    spd_unit = "rpm"
    spd_step = 10
    spd_meaning = "shaft speed set point (rpm)"
    load_meaning = "flow resistance (duct damper position 0-6): louder aerodynamic noise, slight slow-down"
    anomaly_kinds = ("imbalance", "bearing", "blade_damage", "clogging", "loose_mount")
    anomaly_meaning = {
        "imbalance": "stronger 1x (and 2x) shaft tone, blade pass and aerodynamic noise modulated once per revolution",
        "bearing": "outer-race defect impacts (3-5.5 per revolution) ringing a 2.5-6 kHz mode",
        "blade_damage": "blade-pass harmonic ratios changed, shaft-rate sidebands around blade pass",
        "clogging": "less air flow: aerodynamic noise quieter, first duct mode detuned upwards",
        "loose_mount": "loosened mounting: duct and body modes lower and damped, modulation at 2x shaft rate",
    }
    variation = {
        "resonances": ("modes",),
        "profiles": ("shaft_amps", "bpf_amps"),
        "rates": ("spd_base",),
        "gains": ("aero_gain",),
        "depths": ("aero_am", "rev_am"),
    }

    def platform(self, rng: np.random.Generator) -> Product:
        return {
            "spd_base": int(_rounded(rng.uniform(900, 1800), self.spd_step)),
            "blades": int(rng.integers(3, 10)),
            "shaft_amps": _decay_profile(rng, 4, 0.05, 0.3, 0.6),
            "bpf_amps": _decay_profile(rng, 6, 0.25, 0.35, 0.7),
            "modes": _modes(rng, 5, 150, 4500, 3.0, 10.0),
            "aero_gain": float(rng.uniform(0.3, 0.6)),
            "aero_am": float(rng.uniform(0.1, 0.4)),
            "rev_am": float(rng.uniform(0.03, 0.1)),  # residual unbalance: blade pass modulated per revolution
            "aero_color": str(rng.choice(["pink", "white"])),
            "hum_amps": _decay_profile(rng, 3, 0.03, 0.3, 0.6),
            "bearing_ratio": float(rng.uniform(3.0, 5.5)),
            "bearing_modes": _modes(rng, 2, 2500, 6000, 15, 30),
        }

    def render(self, ctx, p, factor, load, anomaly, severity):
        rng = ctx.rng
        s = severity
        f_r = p["spd_base"] / 60.0 * factor * (1.0 - 0.01 * load) * (1.0 + PER_CLIP_SPEED * rng.standard_normal())
        g_clog = self.fault_gain(anomaly, "clogging", s)
        if g_clog:
            f_r *= 1.0 + 0.02 * min(g_clog, 1.0)  # an unloaded fan speeds up a little
        phi = dsp.phase_of(ctx, dsp.rate_track(ctx, f_r))
        blades = p["blades"]
        g = self.fault_gain(anomaly, "imbalance", s)
        g_loose = self.fault_gain(anomaly, "loose_mount", s)

        shaft_amps = dsp.jitter_db(ctx, p["shaft_amps"], PER_CLIP_LEVEL_DB)
        shaft_amps[0] *= db(12.0 * g)
        shaft_amps[1] *= db(6.0 * g + 8.0 * g_loose)
        shaft = dsp.harmonics(phi, shaft_amps, dsp.random_phases(ctx, 4))

        g_blade = self.fault_gain(anomaly, "blade_damage", s)
        bpf_amps = reshape_profile(ctx, dsp.jitter_db(ctx, p["bpf_amps"], PER_CLIP_LEVEL_DB), g_blade, 8.0) * factor**2
        bpf = dsp.harmonics(phi, bpf_amps, dsp.random_phases(ctx, len(bpf_amps)), first=blades, step=blades)
        rev_mod = 1.0 + (p["rev_am"] + 0.5 * g_blade + 0.3 * g) * dsp.cos_k(phi, 1, rng.uniform(0, TWO_PI))
        rev_mod += 0.3 * g_loose * dsp.cos_k(phi, 2, rng.uniform(0, TWO_PI))
        bpf *= rev_mod

        modes = body_modes(ctx, p["modes"], g_loose)
        if g_clog:
            modes[0] = (modes[0][0] * (1.0 + 0.12 * g_clog), modes[0][1], modes[0][2])
        aero = dsp.resonant_noise(ctx, modes, color=p["aero_color"], floor=0.15)
        am = 1.0 + p["aero_am"] * dsp.cos_k(phi, blades, rng.uniform(0, TWO_PI))
        am += 0.3 * g * np.cos(phi) + 0.2 * g_loose * dsp.cos_k(phi, 2)
        aero_level = p["aero_gain"] * factor**2.5 * (1.0 + 0.3 * load) * db(-4.0 * g_clog)
        sig = shaft + bpf + aero_level * am * aero
        sig += dsp.mains_hum(ctx, 100.0, p["hum_amps"])
        sig += bearing_fault(ctx, phi, p, self.fault_gain(anomaly, "bearing", s))
        return sig


class Pump(MachineModel):
    name = "pump"
    fault_drift = TONAL_FAULT_DRIFT
    spd_unit = "rpm"
    spd_step = 10
    spd_meaning = "motor speed set point (rpm)"
    load_meaning = "discharge pressure level 0-6: louder flow noise and vane pass, slight slip"
    anomaly_kinds = ("cavitation", "leakage", "clogging", "bearing", "impeller_wear")
    anomaly_meaning = {
        "cavitation": "dense random crackle of collapsing bubbles ringing a broad 2.5-6 kHz band",
        "leakage": "continuous high-frequency hiss from a leaking seal",
        "clogging": "stronger vane pass, flow noise pulsating once per revolution and quieter",
        "bearing": "outer-race defect impacts ringing a 2.5-6 kHz mode",
        "impeller_wear": "worn impeller: vane-pass harmonic ratios changed, shaft-rate sidebands, pipe modes damped",
    }
    variation = {
        "resonances": ("modes",),
        "profiles": ("shaft_amps", "vane_amps"),
        "rates": ("spd_base",),
        "gains": ("flow_gain",),
    }

    def platform(self, rng):
        return {
            "spd_base": int(_rounded(rng.uniform(1450, 2950), self.spd_step)),
            "vanes": int(rng.integers(5, 9)),
            "shaft_amps": _decay_profile(rng, 3, 0.06, 0.3, 0.6),
            "vane_amps": _decay_profile(rng, 4, 0.15, 0.3, 0.6),
            "modes": _modes(rng, 5, 100, 3000, 4.0, 14.0),
            "flow_gain": float(rng.uniform(0.3, 0.6)),
            "flow_color": str(rng.choice(["pink", "brown"])),
            "hum_amps": _decay_profile(rng, 4, 0.08, 0.4, 0.7),
            "cavitation_modes": _modes(rng, 2, 2500, 6000, 3.0, 6.0),
            "leak_modes": _modes(rng, 2, 3000, 7000, 2.0, 4.0),
            "bearing_ratio": float(rng.uniform(3.0, 5.5)),
            "bearing_modes": _modes(rng, 2, 2500, 6000, 15, 30),
        }

    def render(self, ctx, p, factor, load, anomaly, severity):
        rng = ctx.rng
        s = severity
        f_r = p["spd_base"] / 60.0 * factor * (1.0 - 0.008 * load) * (1.0 + PER_CLIP_SPEED * rng.standard_normal())
        phi = dsp.phase_of(ctx, dsp.rate_track(ctx, f_r, wander=0.002))
        vanes = p["vanes"]
        g_clog = self.fault_gain(anomaly, "clogging", s)
        g_wear = self.fault_gain(anomaly, "impeller_wear", s)

        shaft = dsp.harmonics(phi, dsp.jitter_db(ctx, p["shaft_amps"], PER_CLIP_LEVEL_DB), dsp.random_phases(ctx, 3))
        vane_amps = dsp.jitter_db(ctx, p["vane_amps"], PER_CLIP_LEVEL_DB) * factor**2 * (1.0 + 0.2 * load) * db(8.0 * g_clog)
        vane_amps = reshape_profile(ctx, vane_amps, g_wear, 7.0)
        vane = dsp.harmonics(phi, vane_amps, dsp.random_phases(ctx, len(vane_amps)), first=vanes, step=vanes)
        vane *= 1.0 + 0.4 * g_wear * dsp.cos_k(phi, 1, rng.uniform(0, TWO_PI))
        modes = body_modes(ctx, p["modes"])
        if g_wear:
            modes = detune(modes, 0.0, q_scale=1.0 - 0.4 * min(g_wear, 1.0))
        flow = dsp.resonant_noise(ctx, modes, p["flow_color"], floor=0.1)
        pulsation = 1.0 + 0.1 * dsp.cos_k(phi, vanes) + 0.5 * g_clog * dsp.cos_k(phi, 1, rng.uniform(0, TWO_PI))
        flow_level = p["flow_gain"] * factor**2 * (1.0 + 0.35 * load) * db(-3.0 * g_clog)
        sig = shaft + vane + flow_level * pulsation * flow + dsp.mains_hum(ctx, 100.0, p["hum_amps"])

        g_cav = self.fault_gain(anomaly, "cavitation", s)
        if g_cav:
            times = dsp.poisson_times(ctx, 60.0 + 240.0 * s)
            amps = g_cav * rng.lognormal(0.0, 0.8, size=times.shape)
            sig += dsp.ring_events(ctx, times, amps, p["cavitation_modes"], click=0.3)
        g_leak = self.fault_gain(anomaly, "leakage", s)
        if g_leak:
            sig += g_leak * dsp.resonant_noise(ctx, p["leak_modes"], "white") * (1.0 + 0.1 * dsp.slow_noise(ctx, 3.0))
        sig += bearing_fault(ctx, phi, p, self.fault_gain(anomaly, "bearing", s))
        return sig


class Gearbox(MachineModel):
    name = "gearbox"
    fault_drift = TONAL_FAULT_DRIFT
    spd_unit = "rpm"
    spd_step = 10
    spd_meaning = "input shaft speed set point (rpm)"
    load_meaning = "weight lifted (0-6): stronger gear mesh and mesh-excited noise, slight slow-down"
    anomaly_kinds = ("broken_tooth", "wear", "misalignment", "bearing", "housing_crack")
    anomaly_meaning = {
        "broken_tooth": "an impact once per output-gear revolution and mesh modulation at that rate",
        "wear": "mesh harmonic ratios changed and more mesh noise",
        "misalignment": "stronger 2x shaft tone and deeper input-shaft sidebands around the mesh",
        "bearing": "outer-race defect impacts ringing a 2.5-6 kHz mode",
        "housing_crack": "cracked housing: structural modes lower and damped",
    }
    variation = {
        "resonances": ("modes",),
        "profiles": ("mesh_amps", "shaft_amps"),
        "rates": ("spd_base",),
        "gains": ("noise_gain",),
        "depths": ("side_in", "side_out"),
    }

    def platform(self, rng):
        z1 = int(rng.integers(17, 38))
        return {
            "spd_base": int(_rounded(rng.uniform(600, 1500), self.spd_step)),
            "z1": z1,
            "z2": int(rng.integers(z1 + 7, z1 + 41)),
            "mesh_amps": _decay_profile(rng, 3, 0.3, 0.3, 0.6),
            "side_in": float(rng.uniform(0.05, 0.15)),
            "side_out": float(rng.uniform(0.03, 0.10)),
            "shaft_amps": _decay_profile(rng, 2, 0.04, 0.3, 0.6),
            "modes": _modes(rng, 5, 400, 5000, 5.0, 20.0),
            "noise_gain": float(rng.uniform(0.1, 0.25)),
            "tooth_modes": _modes(rng, 2, 1500, 4500, 10.0, 25.0),
            "hum_amps": _decay_profile(rng, 3, 0.05, 0.3, 0.6),
            "bearing_ratio": float(rng.uniform(3.0, 5.5)),
            "bearing_modes": _modes(rng, 2, 2500, 6000, 15, 30),
        }

    def render(self, ctx, p, factor, load, anomaly, severity):
        rng = ctx.rng
        s = severity
        f1 = p["spd_base"] / 60.0 * factor * (1.0 - 0.005 * load) * (1.0 + PER_CLIP_SPEED * rng.standard_normal())
        phi1 = dsp.phase_of(ctx, dsp.rate_track(ctx, f1, wander=0.002))
        phi2 = phi1 * p["z1"] / p["z2"] + rng.uniform(0, TWO_PI)
        g_tooth = self.fault_gain(anomaly, "broken_tooth", s)
        g_wear = self.fault_gain(anomaly, "wear", s)
        g_mis = self.fault_gain(anomaly, "misalignment", s)
        g_crack = self.fault_gain(anomaly, "housing_crack", s)
        load_f = 1.0 + 0.25 * load

        mesh_amps = dsp.jitter_db(ctx, p["mesh_amps"], PER_CLIP_LEVEL_DB) * load_f * factor
        mesh_amps = reshape_profile(ctx, mesh_amps, g_wear, 8.0)
        mod = (
            1.0
            + (p["side_in"] + 0.3 * g_mis) * dsp.cos_k(phi1, 1, rng.uniform(0, TWO_PI))
            + (p["side_out"] + 0.4 * g_tooth) * np.cos(phi2)
        )
        z1 = p["z1"]
        mesh = dsp.harmonics(phi1, mesh_amps, dsp.random_phases(ctx, 3), first=z1, step=z1) * mod
        noise = dsp.resonant_noise(ctx, body_modes(ctx, p["modes"], g_crack), "white", floor=0.1)
        noise_level = p["noise_gain"] * np.sqrt(load_f) * factor * db(4.0 * g_wear)
        sig = mesh + noise_level * (1.0 + 0.6 * dsp.cos_k(phi1, z1)) * noise

        shaft_amps = dsp.jitter_db(ctx, p["shaft_amps"], PER_CLIP_LEVEL_DB)
        shaft_amps[1] *= db(15.0 * g_mis)
        sig += dsp.harmonics(phi1, shaft_amps, dsp.random_phases(ctx, 2))
        sig += dsp.mains_hum(ctx, 100.0, p["hum_amps"])
        if g_tooth:
            times = dsp.crossing_times(ctx, phi2)
            amps = g_tooth * rng.lognormal(0.0, 0.2, size=times.shape)
            sig += dsp.ring_events(ctx, times, amps, p["tooth_modes"], click=0.2)
        sig += bearing_fault(ctx, phi1, p, self.fault_gain(anomaly, "bearing", s))
        return sig


# --- linear and intermittent machines ------------------------------------------------------------


def _motion_timeline(
    ctx: Ctx, move_s: float, pause_s: float, jitter: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Back-and-forth strokes: start times, durations and direction (+1/-1) of each move.

    A cycle is move, pause, move back, pause; ``jitter`` is the relative std of each move's
    and pause's duration.
    """
    n_moves = int(np.ceil(ctx.n / ctx.sr / (move_s + pause_s))) + 3
    moves = move_s * (1.0 + jitter * ctx.rng.standard_normal(n_moves))
    pauses = pause_s * (1.0 + jitter * ctx.rng.standard_normal(n_moves))
    moves = np.clip(moves, 0.3 * move_s, None)
    pauses = np.clip(pauses, 0.02, None)
    starts = np.concatenate([[0.0], np.cumsum(moves + pauses)[:-1]]) - ctx.rng.uniform(0.0, move_s + pause_s)
    direction = np.where(np.arange(n_moves) % 2 == 0, 1.0, -1.0)
    return starts, moves, direction


def _trapezoid_speed(ctx: Ctx, starts: np.ndarray, moves: np.ndarray, ramp: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised speed (0..1, trapezoid with ``ramp`` fraction) and stroke progress (0..1) per sample."""
    t = ctx.t
    k = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
    tau = (t - starts[k]) / moves[k]
    inside = (tau >= 0.0) & (tau < 1.0)
    speed = np.clip(np.minimum(tau, 1.0 - tau) / ramp, 0.0, 1.0) * inside
    return speed, np.where(inside, tau, -1.0)


class Slider(MachineModel):
    name = "slider"
    fault_drift = TONAL_FAULT_DRIFT
    spd_unit = "mms"
    spd_step = 10
    spd_meaning = "carriage velocity set point (mm/s)"
    load_meaning = "carried mass (0-6): louder rolling noise and end-of-stroke impacts"
    anomaly_kinds = ("rail_damage", "no_grease", "loose_belt", "carriage_wear")
    anomaly_meaning = {
        "rail_damage": "an impact each time the carriage passes a damaged spot of the rail",
        "no_grease": "friction squeal during motion and brighter rolling noise",
        "loose_belt": "irregular stroke timing and rattling during motion",
        "carriage_wear": "worn carriage: rolling modes lower and damped, deeper ball-pass modulation",
    }
    variation = {
        "resonances": ("rolling_modes", "stop_modes"),
        "profiles": ("motor_amps",),
        "rates": ("spd_base", "motor_hz"),
        "gains": ("rolling_gain", "stop_gain", "ball_per_mm"),
    }

    def platform(self, rng):
        return {
            "spd_base": int(_rounded(rng.uniform(200, 600), self.spd_step)),
            "stroke_mm": float(rng.uniform(150, 400)),
            "pause_s": float(rng.uniform(0.1, 0.4)),
            "ramp": float(rng.uniform(0.1, 0.25)),
            "motor_hz": float(rng.uniform(400, 1200)),
            "motor_amps": _decay_profile(rng, 4, 0.15, 0.3, 0.6),
            "rolling_modes": _modes(rng, 4, 500, 4000, 3.0, 12.0),
            "rolling_gain": float(rng.uniform(0.3, 0.6)),
            "ball_per_mm": float(rng.uniform(0.05, 0.2)),
            "stop_modes": _modes(rng, 2, 800, 3000, 10.0, 25.0),
            "stop_gain": float(rng.uniform(0.15, 0.4)),
            "damage_pos": float(rng.uniform(0.2, 0.8)),
            "rail_modes": _modes(rng, 2, 1200, 5000, 15.0, 30.0),
            "hum_amps": _decay_profile(rng, 3, 0.03, 0.3, 0.6),
        }

    def render(self, ctx, p, factor, load, anomaly, severity):
        rng = ctx.rng
        s = severity
        vel = p["spd_base"] * factor * (1.0 + PER_CLIP_SPEED * rng.standard_normal())
        move_s = p["stroke_mm"] / vel / (1.0 - p["ramp"])
        g_belt = self.fault_gain(anomaly, "loose_belt", s)
        g_wear = self.fault_gain(anomaly, "carriage_wear", s)
        starts, moves, _ = _motion_timeline(ctx, move_s, p["pause_s"], 0.01 + 0.12 * g_belt)
        speed, progress = _trapezoid_speed(ctx, starts, moves, p["ramp"])
        v = speed * factor  # speed relative to the product's base velocity
        load_f = 1.0 + 0.3 * load

        motor_phase = dsp.phase_of(ctx, p["motor_hz"] * v)
        motor = dsp.harmonics(motor_phase, dsp.jitter_db(ctx, p["motor_amps"], PER_CLIP_LEVEL_DB), dsp.random_phases(ctx, 4))
        motor *= np.sqrt(speed) * (1.0 + 0.1 * load)
        ball_phase = dsp.phase_of(ctx, p["ball_per_mm"] * p["spd_base"] * v)
        g_grease = self.fault_gain(anomaly, "no_grease", s)
        rolling = dsp.resonant_noise(ctx, body_modes(ctx, p["rolling_modes"], g_wear), "white", floor=0.1)
        if g_grease:
            bright = signal.sosfilt(dsp.band_sos(3000.0, None, ctx.sr), dsp.colored_noise(ctx, "white"))
            rolling += 0.5 * g_grease * bright
        rolling *= p["rolling_gain"] * load_f * v * (1.0 + (0.3 + 0.4 * g_wear) * np.cos(ball_phase))
        sig = motor + rolling

        stops = (starts + moves)[(starts + moves > 0) & (starts + moves < ctx.n / ctx.sr)]
        stop_amps = p["stop_gain"] * load_f * factor * rng.lognormal(0.0, 0.25, size=stops.shape)
        sig += dsp.ring_events(ctx, stops, stop_amps, body_modes(ctx, p["stop_modes"], g_wear), click=0.2)
        sig += dsp.mains_hum(ctx, 100.0, p["hum_amps"])

        g_rail = self.fault_gain(anomaly, "rail_damage", s)
        if g_rail:
            # the damaged spot is met at progress d going out and 1-d coming back
            pos = np.where(np.arange(len(starts)) % 2 == 0, p["damage_pos"], 1.0 - p["damage_pos"])
            times = starts + pos * moves
            amps = g_rail * factor * rng.lognormal(0.0, 0.2, size=times.shape)
            sig += dsp.ring_events(ctx, times, amps, p["rail_modes"], click=0.3)
        if g_grease:
            sig += squeal(ctx, 1500.0, 4000.0, g_grease) * speed
        if g_belt:
            times = dsp.poisson_times(ctx, 25.0)
            idx = np.clip((times * ctx.sr).astype(np.int64), 0, ctx.n - 1)
            amps = g_belt * speed[idx] * rng.lognormal(0.0, 0.5, size=times.shape)
            sig += dsp.ring_events(ctx, times, amps, p["rail_modes"][:1])
        del progress
        return sig


class Valve(MachineModel):
    name = "valve"
    spd_unit = "cpm"
    spd_step = 1
    spd_meaning = "switching rate set point (open/close cycles per minute; the pulse width stays fixed)"
    load_meaning = "line pressure (0-6): louder flow noise and harder valve clicks"
    anomaly_kinds = ("missed_event", "late_close", "contamination", "leak", "irregular_timing")
    anomaly_meaning = {
        "missed_event": "some cycles do not open at all (stuck valve): clicks and flow missing",
        "late_close": "a sticky spool closes late and slowly in most cycles: longer flow, softer closing click",
        "contamination": "dirt on the seat: click resonances lower and damped, a short rattle after closing",
        "leak": "hiss while the valve is closed",
        "irregular_timing": "a sluggish pilot: openings and closings delayed irregularly, longer bounce",
    }
    variation = {
        "resonances": ("open_modes", "close_modes", "flow_modes"),
        "profiles": (),
        "rates": ("spd_base", "duty"),
        "gains": ("open_gain", "close_gain", "flow_gain"),
        "depths": ("bounce_s", "bounce_ratio"),
    }

    def platform(self, rng):
        return {
            "spd_base": int(rng.integers(30, 91)),
            "duty": float(rng.uniform(0.25, 0.6)),
            "pulses": int(rng.integers(1, 3)),  # openings per cycle
            "open_modes": _modes(rng, 2, 1500, 6000, 15.0, 40.0),
            "close_modes": _modes(rng, 3, 800, 5000, 15.0, 40.0),
            "open_gain": float(rng.uniform(0.06, 0.12)),
            "close_gain": float(rng.uniform(0.12, 0.25)),
            "bounce_s": float(rng.uniform(0.003, 0.008)),
            "bounce_ratio": float(rng.uniform(0.2, 0.5)),
            "flow_modes": _modes(rng, 3, 300, 4000, 2.0, 6.0),
            "flow_gain": float(rng.uniform(0.1, 0.25)),
            "hum_amps": _decay_profile(rng, 3, 0.02, 0.3, 0.6),
        }

    def render(self, ctx, p, factor, load, anomaly, severity):
        rng = ctx.rng
        s = severity
        cycle = 60.0 / (p["spd_base"] * factor) * (1.0 + PER_CLIP_SPEED * rng.standard_normal())
        n_cycles = int(np.ceil(ctx.n / ctx.sr / cycle)) + 2
        cycle_starts = (np.arange(n_cycles) - 1) * cycle + rng.uniform(0.0, cycle)
        pulses = p["pulses"]
        slot = cycle / pulses
        opens = (cycle_starts[:, None] + slot * np.arange(pulses)[None, :]).ravel()
        # the controller's pulse width is fixed: switching faster raises the open fraction
        width = min(60.0 / p["spd_base"] / pulses * p["duty"], 0.85 * slot)
        durs = np.full(opens.shape, width)
        g_irr = self.fault_gain(anomaly, "irregular_timing", s)
        opens = opens + (0.002 + 0.03 * g_irr) * np.abs(rng.standard_normal(opens.shape))
        durs = durs * (1.0 + (0.01 + 0.15 * g_irr) * rng.standard_normal(opens.shape))
        durs = np.clip(durs, 0.2 * width, 0.95 * slot)

        g_miss = self.fault_gain(anomaly, "missed_event", s)
        g_late = self.fault_gain(anomaly, "late_close", s)
        keep = np.ones(opens.shape, dtype=bool)
        if g_miss:
            keep = rng.random(opens.shape) >= 0.5 * min(g_miss, 1.0)
        # a sticky spool closes late and slowly: longer flow, a softer closing click
        late = (rng.random(opens.shape) < 0.8) * min(g_late, 1.0)
        durs = durs + late * 0.6 * (slot - durs)
        close_scale = 1.0 - 0.6 * late
        opens, durs, close_scale = opens[keep], durs[keep], close_scale[keep]
        closes = opens + durs

        load_f = 1.0 + 0.25 * load
        g_cont = self.fault_gain(anomaly, "contamination", s)
        # dirt on the seat lowers and damps the click modes
        open_modes = detune(p["open_modes"], -0.06 * g_cont, 1.0 - 0.5 * min(g_cont, 1.0))
        close_modes = detune(p["close_modes"], -0.06 * g_cont, 1.0 - 0.5 * min(g_cont, 1.0))
        open_modes = dsp.jitter_resonances(ctx, open_modes, PER_CLIP_RESONANCE_DRIFT, 0.5)
        close_modes = dsp.jitter_resonances(ctx, close_modes, PER_CLIP_RESONANCE_DRIFT, 0.5)
        bounce_s = p["bounce_s"] * (1.0 + 0.5 * g_irr)

        def clicks(times: np.ndarray, gain: float | np.ndarray, modes: list) -> np.ndarray:
            amps = gain * load_f * rng.lognormal(0.0, 0.15, size=times.shape)
            both = np.concatenate([times, times + bounce_s])
            both_amps = np.concatenate([amps, amps * p["bounce_ratio"]])
            return dsp.ring_events(ctx, both, both_amps, modes, click=0.3)

        sig = clicks(opens, p["open_gain"], open_modes) + clicks(closes, p["close_gain"] * close_scale, close_modes)
        gate = dsp.intervals_to_gate(ctx, opens, closes)
        smooth = dsp.smooth_gate(ctx, gate, 0.008)
        flow = dsp.resonant_noise(ctx, body_modes(ctx, p["flow_modes"]), "white", floor=0.1)
        sig += p["flow_gain"] * load_f * smooth * flow
        sig += dsp.mains_hum(ctx, 100.0, p["hum_amps"]) * (0.2 + 0.8 * smooth)
        if g_cont:
            rattle_times = closes + rng.uniform(0.01, 0.04, size=closes.shape)
            sig += clicks(rattle_times, 0.2 * g_cont, close_modes)
        g_leak = self.fault_gain(anomaly, "leak", s)
        if g_leak:
            hiss = signal.sosfilt(dsp.band_sos(2000.0, None, ctx.sr), dsp.colored_noise(ctx, "white"))
            sig += g_leak * p["flow_gain"] * (1.0 - smooth) * hiss
        return sig


# --- toys ----------------------------------------------------------------------------------------


class _ToyMotor:
    """Small brushed DC motor: rotation harmonics, commutator brush noise, gear whine."""

    variation = {
        "resonances": ("brush_modes", "rolling_modes", "body_modes"),
        "profiles": ("motor_amps", "whine_amps"),
        "rates": ("motor_hz",),
        "gains": ("brush_gain", "rolling_gain"),
    }

    @staticmethod
    def platform(rng: np.random.Generator, f_lo: float, f_hi: float) -> Product:
        return {
            "motor_hz": float(rng.uniform(f_lo, f_hi)),
            "segments": int(rng.choice([3, 5, 7])),
            "motor_amps": _decay_profile(rng, 6, 0.08, 0.4, 0.7),
            "pinion": int(rng.integers(8, 15)),
            "whine_amps": _decay_profile(rng, 3, 0.12, 0.3, 0.6),
            "brush_modes": _modes(rng, 2, 3000, 7000, 2.0, 5.0),
            "brush_gain": float(rng.uniform(0.05, 0.15)),
            "ratio": float(rng.uniform(12, 25)),
            "rolling_modes": _modes(rng, 4, 200, 2500, 3.0, 8.0),
            "rolling_gain": float(rng.uniform(0.2, 0.5)),
            "body_modes": _modes(rng, 3, 500, 3000, 8.0, 20.0),
        }

    @staticmethod
    def motor(
        ctx: Ctx, p: Product, phi: np.ndarray, whine_amps: np.ndarray, am: np.ndarray | float, brush_extra: float,
        unbalance_db: float = 0.0,
    ) -> np.ndarray:
        motor_amps = dsp.jitter_db(ctx, p["motor_amps"], PER_CLIP_LEVEL_DB)
        motor_amps[:2] *= db(unbalance_db)
        motor = dsp.harmonics(phi, motor_amps, dsp.random_phases(ctx, 6))
        whine = dsp.harmonics(phi, whine_amps, dsp.random_phases(ctx, 3), first=p["pinion"], step=p["pinion"])
        brush = dsp.resonant_noise(ctx, p["brush_modes"], "white")
        brush *= p["brush_gain"] * db(brush_extra) * (1.0 + 0.7 * dsp.cos_k(phi, p["segments"]))
        return (motor + whine) * am + brush


class ToyCar(MachineModel):
    name = "ToyCar"
    spd_unit = "V"
    spd_step = 1
    spd_meaning = "motor voltage set point (V); the car runs on a roller at a speed proportional to it"
    load_meaning = "car weight (0-6): louder rolling and gear whine, slight slow-down"
    anomaly_kinds = ("bent_shaft", "gear_damage", "tire_damage", "motor_brush", "loose_body")
    anomaly_meaning = {
        "bent_shaft": "stronger 1x/2x motor tones; motor sound and rolling noise modulated once per wheel revolution",
        "gear_damage": "gear whine ratios changed and an impact once per revolution of the intermediate gear",
        "tire_damage": "a low thump once per wheel revolution",
        "motor_brush": "worn brushes: stronger brush noise and sparking crackle",
        "loose_body": "a loose body shell: body and rolling modes lower and damped, rattle at wheel rate",
    }
    variation = {
        **_ToyMotor.variation,
        "resonances": _ToyMotor.variation["resonances"] + ("tyre_modes",),
        "rates": ("spd_base", "motor_hz"),
        "depths": ("wheel_am",),
    }

    def platform(self, rng):
        p = _ToyMotor.platform(rng, 80.0, 170.0)
        p.update(
            spd_base=int(rng.integers(24, 41)),
            gear_teeth=int(rng.integers(25, 45)),
            tyre_modes=_modes(rng, 1, 120, 400, 3.0, 8.0),
            wheel_am=float(rng.uniform(0.15, 0.35)),  # rolling noise modulated once per wheel revolution
        )
        return p

    def render(self, ctx, p, factor, load, anomaly, severity):
        rng = ctx.rng
        s = severity
        f_m = p["motor_hz"] * factor * (1.0 - 0.04 * load) * (1.0 + PER_CLIP_SPEED * rng.standard_normal())
        phi = dsp.phase_of(ctx, dsp.rate_track(ctx, f_m, wander=0.005, wander_rate=1.0))
        phi_w = phi / p["ratio"] + rng.uniform(0, TWO_PI)
        g_bent = self.fault_gain(anomaly, "bent_shaft", s)
        g_brush = self.fault_gain(anomaly, "motor_brush", s)
        g_gear = self.fault_gain(anomaly, "gear_damage", s)
        g_loose = self.fault_gain(anomaly, "loose_body", s)
        am = 1.0 + min(0.5 * g_bent, 0.9) * np.cos(phi_w)
        whine_amps = reshape_profile(ctx, dsp.jitter_db(ctx, p["whine_amps"], PER_CLIP_LEVEL_DB) * (1.0 + 0.2 * load), g_gear, 8.0)
        sig = _ToyMotor.motor(ctx, p, phi, whine_amps, am, 6.0 * g_brush, 10.0 * g_bent)
        rolling = dsp.resonant_noise(ctx, body_modes(ctx, p["rolling_modes"], g_loose), "pink", floor=0.1)
        roll_am = 1.0 + min(p["wheel_am"] + 0.3 * g_bent, 0.95) * np.cos(phi_w)
        sig += p["rolling_gain"] * factor * (1.0 + 0.3 * load) * roll_am * rolling
        body = body_modes(ctx, p["body_modes"], g_loose)
        if g_brush:
            times = dsp.poisson_times(ctx, 80.0)
            amps = g_brush * rng.lognormal(0, 0.6, size=times.shape)
            sig += dsp.ring_events(ctx, times, amps, p["brush_modes"], click=0.5)
        if g_gear:
            times = dsp.crossing_times(ctx, phi * p["pinion"] / p["gear_teeth"])
            amps = 0.1 * g_gear * rng.lognormal(0, 0.2, size=times.shape)
            sig += dsp.ring_events(ctx, times, amps, body, click=0.2)
        if g_loose:
            times = dsp.crossing_times(ctx, phi_w, per_cycle=2.0)
            amps = 0.05 * g_loose * rng.lognormal(0, 0.5, size=times.shape)
            sig += dsp.ring_events(ctx, times, amps, body)
        g_tyre = self.fault_gain(anomaly, "tire_damage", s)
        if g_tyre:
            times = dsp.crossing_times(ctx, phi_w)
            sig += dsp.ring_events(ctx, times, g_tyre * rng.lognormal(0, 0.2, size=times.shape), p["tyre_modes"])
        return sig


class ToyTrain(MachineModel):
    name = "ToyTrain"
    fault_drift = TONAL_FAULT_DRIFT
    spd_unit = "pct"
    spd_step = 1
    spd_meaning = "controller speed setting (percent of full voltage)"
    load_meaning = "number of loaded wagons (0-6): louder rail-joint clicks and rolling, slight slow-down"
    anomaly_kinds = ("flat_wheel", "flange_rub", "loose_part", "gear_wear", "worn_axle")
    anomaly_meaning = {
        "flat_wheel": "a thump once per wheel revolution",
        "flange_rub": "wheel flange rubbing the rail: squeal and brighter rolling noise",
        "loose_part": "rattling of a loose part while running",
        "gear_wear": "gear whine ratios changed and modulated at wheel rate",
        "worn_axle": "worn axle bearings: rail-joint click modes lower and damped, irregular click timing",
    }
    variation = {
        **_ToyMotor.variation,
        "resonances": _ToyMotor.variation["resonances"] + ("click_modes", "thump_modes"),
        "rates": ("spd_base", "motor_hz", "joint_hz"),
        "gains": _ToyMotor.variation["gains"] + ("click_gain",),
    }

    def platform(self, rng):
        p = _ToyMotor.platform(rng, 50.0, 120.0)
        a = float(rng.uniform(0.04, 0.1))
        b = float(rng.uniform(0.2, 0.5))
        p.update(
            spd_base=int(rng.integers(40, 81)),
            joint_hz=float(rng.uniform(0.6, 1.6)),
            axle_s=[0.0, a, b, b + a],  # axle offsets at base speed: two bogies
            click_modes=_modes(rng, 3, 700, 3500, 8.0, 20.0),
            click_gain=float(rng.uniform(0.15, 0.4)),
            thump_modes=_modes(rng, 1, 150, 400, 3.0, 8.0),
            rattle_modes=_modes(rng, 2, 2000, 5000, 15.0, 30.0),
        )
        return p

    def render(self, ctx, p, factor, load, anomaly, severity):
        rng = ctx.rng
        s = severity
        speed = factor * (1.0 - 0.03 * load) * (1.0 + PER_CLIP_SPEED * rng.standard_normal())
        f_m = p["motor_hz"] * speed
        phi = dsp.phase_of(ctx, dsp.rate_track(ctx, f_m, wander=0.006, wander_rate=0.8))
        phi_w = phi / p["ratio"] + rng.uniform(0, TWO_PI)
        g_gear = self.fault_gain(anomaly, "gear_wear", s)
        g_axle = self.fault_gain(anomaly, "worn_axle", s)
        am = 1.0 + 0.4 * g_gear * np.cos(phi_w)
        whine_amps = reshape_profile(ctx, dsp.jitter_db(ctx, p["whine_amps"], PER_CLIP_LEVEL_DB) * (1.0 + 0.15 * load), g_gear, 8.0)
        sig = _ToyMotor.motor(ctx, p, phi, whine_amps, am, 0.0)

        g_rub = self.fault_gain(anomaly, "flange_rub", s)
        rolling = dsp.resonant_noise(ctx, body_modes(ctx, p["rolling_modes"]), "pink", floor=0.1)
        if g_rub:
            rolling += 0.4 * g_rub * signal.sosfilt(dsp.band_sos(2500.0, None, ctx.sr), dsp.colored_noise(ctx, "white"))
        sig += p["rolling_gain"] * speed * (1.0 + 0.25 * load) * rolling

        # rail joints: every axle clicks over each joint; spacing in time shrinks with speed
        joint_period = 1.0 / (p["joint_hz"] * speed)
        n_joints = int(np.ceil(ctx.n / ctx.sr / joint_period)) + 2
        joints = (np.arange(n_joints) - 1) * joint_period + rng.uniform(0, joint_period)
        joints = joints + 0.003 * rng.standard_normal(joints.shape)
        times = (joints[:, None] + np.asarray(p["axle_s"])[None, :] / speed).ravel()
        times = times + 0.02 * g_axle * rng.standard_normal(times.shape)
        amps = p["click_gain"] * (1.0 + 0.25 * load) * np.sqrt(speed) * rng.lognormal(0, 0.2, size=times.shape)
        sig += dsp.ring_events(ctx, times, amps, body_modes(ctx, p["click_modes"], g_axle), click=0.3)
        sig += dsp.ring_events(ctx, times, 0.5 * amps, p["thump_modes"])

        g_flat = self.fault_gain(anomaly, "flat_wheel", s)
        if g_flat:
            t_flat = dsp.crossing_times(ctx, phi_w)
            amps = g_flat * rng.lognormal(0, 0.2, size=t_flat.shape)
            sig += dsp.ring_events(ctx, t_flat, amps, p["thump_modes"] + p["click_modes"][:1])
        if g_rub:
            sig += squeal(ctx, 2000.0, 5000.0, g_rub)
        g_loose = self.fault_gain(anomaly, "loose_part", s)
        if g_loose:
            t_rattle = dsp.poisson_times(ctx, 15.0 + 20.0 * s)
            amps = g_loose * rng.lognormal(0, 0.5, size=t_rattle.shape)
            sig += dsp.ring_events(ctx, t_rattle, amps, p["rattle_modes"], click=0.3)
        return sig


# Fault strengths (scale of ``severity``), tuned with benchmarks/calibrate_synthetic.py.
ANOMALY_GAIN: dict[str, dict[str, float]] = {
    "fan": {"imbalance": 1.2, "bearing": 0.06, "blade_damage": 1.5, "clogging": 0.8, "loose_mount": 1.3},
    "pump": {"cavitation": 0.03, "leakage": 0.03, "clogging": 0.6, "bearing": 0.03, "impeller_wear": 1.0},
    "gearbox": {"broken_tooth": 0.06, "wear": 1.0, "misalignment": 1.0, "bearing": 0.03, "housing_crack": 1.0},
    "slider": {"rail_damage": 0.8, "no_grease": 0.1, "loose_belt": 0.1, "carriage_wear": 1.0},
    "valve": {"missed_event": 0.6, "late_close": 1.0, "contamination": 1.0, "leak": 0.15, "irregular_timing": 1.0},
    "ToyCar": {"bent_shaft": 0.9, "gear_damage": 1.0, "tire_damage": 0.45, "motor_brush": 0.15, "loose_body": 1.5},
    "ToyTrain": {"flat_wheel": 0.5, "flange_rub": 0.1, "loose_part": 0.05, "gear_wear": 1.0, "worn_axle": 1.0},
}

MODELS: dict[str, MachineModel] = {
    m.name: m for m in (Fan(), Gearbox(), Pump(), Slider(), Valve(), ToyCar(), ToyTrain())
}
MACHINE_TYPES: tuple[str, ...] = ("fan", "gearbox", "pump", "slider", "valve", "ToyCar", "ToyTrain")
