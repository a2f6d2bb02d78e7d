"""The built-in synthetic data set: DCASE 2021 Task 2 style machine sounds, generated in seconds.

Like scikit-learn's ``make_blobs``, but for anomalous sound detection under domain shift::

    from hybrid_asd.data import synthetic
    summary = synthetic.generate("data/synthetic_demo", preset="demo", seed=0)

writes 16 kHz PCM16 mono WAV files in the exact DCASE 2021 layout and names::

    <out>/<machine>/train/section_00_source_train_normal_0000_spd_1450rpm_load_1_noise_A.wav
    <out>/<machine>/train/section_00_target_train_normal_0000_...
    <out>/<machine>/source_test/section_00_source_test_{normal,anomaly}_0000_...
    <out>/<machine>/target_test/section_00_target_test_{normal,anomaly}_0000_...

plus ``<out>/synthetic.json`` (preset, seed, version, every section's product and conditions)
and ``<out>/synthetic_clips.csv`` (per clip: the true conditions, fault kind and severity).

Each section is one product of its machine type (see :mod:`hybrid_asd.data.synth.machines`).
The source and target domains of a section differ in one factor: the operating speed, the
load, or the background environment and SNR. Attributes in file names record the operating
conditions (``spd``, ``load``, ``noise``).

Determinism: every clip draws from its own ``np.random.SeedSequence([seed, machine_index,
section, domain_index, split_index, label_index, clip_index])`` (machine_index into
:data:`MACHINE_TYPES`, so choosing fewer machines changes no file), and all signal math is
sequential float64 (see :mod:`hybrid_asd.data.synth.dsp`). The same seed therefore gives the
same bytes whatever the number of workers. docs/synthetic.md has the calibration.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from hybrid_asd import __version__
from hybrid_asd.data.synth import dsp
from hybrid_asd.data.synth.background import NOISE_TYPES, render_background
from hybrid_asd.data.synth.dsp import Ctx
from hybrid_asd.data.synth.machines import ANOMALY_GAIN, MACHINE_TYPES, MODELS
from hybrid_asd.errors import ConfigError, DataError
from hybrid_asd.utils import atomic_path, atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

__all__ = [
    "MACHINE_TYPES",
    "PRESETS",
    "SYNTH_VERSION",
    "ClipTask",
    "Preset",
    "SynthSummary",
    "clip_tasks",
    "draw_mounting",
    "generate",
    "plan_section",
    "plan_sections",
    "resolve_preset",
    "synthesize_clip",
]

# Bump when a change alters generated samples for the same seed and preset.
SYNTH_VERSION = "2.2.0"
SAMPLE_RATE = 16000
DOMAINS = ("source", "target")
SPLITS = ("train", "test")
LABELS = ("normal", "anomaly")
SHIFT_KINDS = ("speed", "load", "noise")

# Level and noise settings of the mix (dB); see docs/synthetic.md.
OUTPUT_RMS_DBFS = -30.0  # nominal clip level
MIC_GAIN_STD_DB = 0.5  # per-clip gain scatter
SNR_RANGE_DB = (0.0, 6.0)  # typical SNR (machine vs background) of a machine type's factory
SNR_JITTER_DB = 4.0  # per-clip SNR scatter: uniform +-4 dB around it
TARGET_NOISE_SNR_JITTER_DB = 6.0  # per-clip SNR scatter in a noise-shifted target domain (another, busier hall)
MIC2_LOSS_DB = 3.0  # the far microphone hears the machine this much quieter
SEVERITY_RANGE = (0.15, 1.0)  # fault severity, uniform per anomalous clip
PEAK_LIMIT = 0.999

# Extra entropy words that keep section-level streams apart from the clip streams.
_SECTION_STREAM = 1_000_003
_REFERENCE_STREAM = 1_000_033
_PLATFORM_STREAM = 1_000_037
_REFERENCE_SECONDS = 2.0


@dataclass(frozen=True)
class Preset:
    """Sizes of one synthetic data set."""

    name: str
    machines: tuple[str, ...]
    sections: tuple[int, ...]
    n_source_train: int  # normal training clips per section, source domain
    n_target_train: int  # normal training clips per section, target domain
    n_test_per_class: int  # normal and anomalous test clips, each, per section and domain
    duration: float  # seconds per clip
    sample_rate: int = SAMPLE_RATE
    channels: int = 1  # 1: one microphone per clip (the `mic` attribute); 2: both at once (DCASE 2026 style)

    def clips_per_section(self) -> int:
        return self.n_source_train + self.n_target_train + 4 * self.n_test_per_class

    def n_clips(self) -> int:
        return len(self.machines) * len(self.sections) * self.clips_per_section()


PRESETS: dict[str, Preset] = {
    # for tests: a few seconds to generate (3 s clips: enough for one 64-frame log-mel patch)
    "tiny": Preset("tiny", ("fan", "valve"), (0, 1), 12, 3, 6, 3.0),
    # the demo pipeline's data: 3 machine types x 3 sections, about 3.6k clips of 5 s
    "demo": Preset("demo", ("fan", "valve", "ToyCar"), (0, 1, 2), 200, 3, 50, 5.0),
    # DCASE 2021 sizes: 7 machine types x 6 sections, 1000 + 3 training clips, 10 s
    "full": Preset("full", MACHINE_TYPES, (0, 1, 2, 3, 4, 5), 1000, 3, 100, 10.0),
}

_OVERRIDABLE = ("n_source_train", "n_target_train", "n_test_per_class", "duration", "sections", "machines", "channels")


@dataclass
class SynthSummary:
    """What :func:`generate` wrote."""

    out_dir: Path
    preset: Preset
    seed: int
    n_clips: int
    n_bytes: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)  # clips per machine type

    @property
    def audio_hours(self) -> float:
        return self.n_clips * self.preset.duration / 3600.0

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """One line for logs and the CLI."""
        return (
            f"{self.n_clips} clips ({self.audio_hours:.1f} h of audio, {self.n_bytes / 1e6:.0f} MB; "
            f"preset {self.preset.name}, seed {self.seed}, {', '.join(self.preset.machines)}) "
            f"written to {self.out_dir} in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class ClipTask:
    """One clip to render: its place in the data set."""

    machine: str
    section: int
    domain: str
    split: str
    label: str
    index: int


# --- presets and arguments -------------------------------------------------------------------------


def resolve_preset(preset: str | Preset, machines: Sequence[str] | None = None, **overrides: Any) -> Preset:
    """The preset named ``preset`` with ``machines`` and size overrides applied and checked."""
    if isinstance(preset, Preset):
        base = preset
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ConfigError(f"unknown synthetic preset {preset!r}; known presets: {sorted(PRESETS)}")
    unknown = sorted(set(overrides) - set(_OVERRIDABLE))
    if unknown:
        raise ConfigError(f"unknown synthetic preset override(s) {unknown}; allowed: {list(_OVERRIDABLE)}")
    if machines is not None:
        overrides["machines"] = machines
    values = {k: v for k, v in overrides.items() if v is not None}
    if "machines" in values:
        values["machines"] = _check_machines(values["machines"])
    if "sections" in values:
        values["sections"] = _check_sections(values["sections"])
    resolved = replace(base, **values)
    _check_sizes(resolved)
    return resolved


def _check_machines(machines: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(machines, str):
        machines = [m for m in machines.split(",") if m]
    machines = tuple(machines)
    if not machines:
        raise ConfigError("machines is empty; choose from " + ", ".join(MACHINE_TYPES))
    for machine in machines:
        if machine not in MODELS:
            raise ConfigError(f"unknown machine type {machine!r}; known machine types: {list(MACHINE_TYPES)}")
    if len(set(machines)) != len(machines):
        raise ConfigError(f"machines lists a machine type twice: {list(machines)}")
    return machines


def _check_sections(sections: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(sections, (int, np.integer)) and not isinstance(sections, bool):
        if not 1 <= sections <= 100:
            raise ConfigError(f"sections must be a count from 1 to 100 or a list of section numbers, got {sections}")
        return tuple(range(int(sections)))
    out = tuple(int(s) for s in sections)
    if not out:
        raise ConfigError("sections is empty: zero clips to generate")
    if any(not 0 <= s <= 99 for s in out) or len(set(out)) != len(out):
        raise ConfigError(f"sections must be distinct numbers 0-99, got {list(out)}")
    return out


def _check_sizes(preset: Preset) -> None:
    for key in ("n_source_train", "n_test_per_class"):
        value = getattr(preset, key)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key} must be a whole number >= 1, got {value!r} (zero clips)")
    value = preset.n_target_train
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"n_target_train must be a whole number >= 0, got {value!r}")
    if max(preset.n_source_train, preset.n_test_per_class, preset.n_target_train) > 9999:
        raise ConfigError("clip counts above 9999 per section do not fit the 4-digit DCASE clip number")
    if not isinstance(preset.duration, (int, float)) or not 0.5 <= float(preset.duration) <= 600.0:
        raise ConfigError(f"duration must be 0.5-600 seconds, got {preset.duration!r}")
    if preset.channels not in (1, 2) or isinstance(preset.channels, bool):
        raise ConfigError(f"channels must be 1 or 2, got {preset.channels!r}")


# --- sections: products and domain conditions ------------------------------------------------------


def _machine_index(machine: str) -> int:
    return MACHINE_TYPES.index(machine)


def _set_points(base: int, step: int, factors: Iterable[float]) -> list[int]:
    """Distinct set points near ``base * factor``, multiples of ``step``, at least one step apart."""
    out: list[int] = []
    for f in factors:
        value = int(round(base * f / step) * step)
        while value in out:
            value += step if f >= 1.0 else -step
        out.append(max(value, step))
    return out


def _eq_bands(rng: np.random.Generator, k: int, gain_db: tuple[float, float], q: tuple[float, float]) -> list:
    """``k`` peaking-equaliser bands ``[freq, gain_db, q]``: log-uniform 150-6000 Hz, random sign."""
    freqs = np.sort(np.exp(rng.uniform(np.log(150.0), np.log(6000.0), size=k)))
    gains = rng.uniform(*gain_db, size=k) * rng.choice([-1.0, 1.0], size=k)
    qs = rng.uniform(*q, size=k)
    return [[round(float(f), 1), round(float(g), 2), round(float(w), 2)] for f, g, w in zip(freqs, gains, qs)]


def draw_mounting(rng: np.random.Generator) -> list:
    """A section's mounting transfer path: three gentle peaking-EQ bands (+-0.3-1 dB), as a machine bolted to
    another floor sounds slightly different."""
    return _eq_bands(rng, 3, (0.3, 1.0), (0.8, 2.5))


def plan_factory(seed: int, machine: str) -> dict[str, Any]:
    """What all sections of a machine type share: the product platform, the factory and the microphones.

    From ``SeedSequence([seed, machine_index, _PLATFORM_STREAM])``: the platform every section is a
    variant of; the environments whose background noise is mixed into source-domain clips (three of
    the four, drawn per clip; the fourth is held out for noise-shifted target domains); the typical
    SNR; and the two microphone positions' transfer paths (``mic`` attribute).
    """
    m_idx = _machine_index(machine)
    rng = np.random.default_rng(np.random.SeedSequence([seed, m_idx, _PLATFORM_STREAM]))
    platform = MODELS[machine].platform(rng)
    envs = [str(e) for e in rng.permutation(sorted(NOISE_TYPES))]
    return {
        "platform": platform,
        "noise_pool": sorted(envs[:3]),
        "noise_held_out": envs[3],
        "snr_db": round(float(rng.uniform(*SNR_RANGE_DB)), 1),
        # mic 1 near the machine; mic 2 farther away: another path and the machine MIC2_LOSS_DB quieter
        "mics": {"1": _eq_bands(rng, 2, (0.5, 2.0), (0.7, 1.5)), "2": _eq_bands(rng, 3, (1.0, 3.0), (0.7, 2.0))},
    }


def plan_section(seed: int, machine: str, section: int, factory: dict[str, Any] | None = None) -> dict[str, Any]:
    """One section: its product variant, mounting, domain shift and the conditions of each domain.

    The variant comes from ``SeedSequence([seed, machine_index, section, _SECTION_STREAM])`` applied to
    the machine type's platform (:func:`plan_factory`). Source-domain attributes: three speed set points,
    two loads, two microphone positions; the background is drawn per clip from the factory's pool.
    """
    model = MODELS[machine]
    m_idx = _machine_index(machine)
    factory = plan_factory(seed, machine) if factory is None else factory
    rng = np.random.default_rng(np.random.SeedSequence([seed, m_idx, section, _SECTION_STREAM]))
    product = model.variant(factory["platform"], rng)
    mount = draw_mounting(rng)
    base, step = product["spd_base"], model.spd_step
    shift = SHIFT_KINDS[(section + m_idx) % len(SHIFT_KINDS)]

    delta = rng.uniform(0.08, 0.12)
    load0 = int(rng.integers(0, 3))
    source = {
        "spd": _set_points(base, step, [1.0 - delta, 1.0, 1.0 + delta]),
        "load": [load0, load0 + 1],
        "mic": [1, 2],
        "noise": list(factory["noise_pool"]),
        "snr_db": factory["snr_db"],
    }
    target = copy.deepcopy(source)
    # the shift draws always happen, so a section's other values do not depend on its kind
    speed_shift = rng.uniform(0.18, 0.30) * rng.choice([-1.0, 1.0])
    load_shift = int(rng.integers(3, 5))
    snr_drop = float(rng.uniform(4.0, 8.0))
    # The target domain is a new, less controlled condition: it varies at least as much as the
    # source along the shifted factor, and only 3 of its clips are given for training.
    if shift == "speed":
        spread = [1.0 - 1.5 * delta, 1.0, 1.0 + 1.5 * delta]
        target["spd"] = _set_points(base, step, [(1.0 + speed_shift) * f for f in spread])
    elif shift == "load":
        top = min(load0 + load_shift + 2, 6)
        target["load"] = [top - 2, top - 1, top]
    else:
        target["noise"] = [factory["noise_held_out"]]
        target["snr_db"] = round(factory["snr_db"] - snr_drop, 1)
        target["snr_jitter_db"] = TARGET_NOISE_SNR_JITTER_DB
    return {
        "machine": machine,
        "section": section,
        "shift": shift,
        "product": product,
        "mount": mount,
        "mics": factory["mics"],
        "source": source,
        "target": target,
        "ref_rms": _reference_rms(seed, machine, section, product, source),
    }


def _reference_rms(seed: int, machine: str, section: int, product: dict, source: dict) -> float:
    """RMS of the product's normal sound at its middle source speed and lower load (sets levels and SNR)."""
    m_idx = _machine_index(machine)
    rng = np.random.default_rng(np.random.SeedSequence([seed, m_idx, section, _REFERENCE_STREAM]))
    ctx = Ctx(rng, int(_REFERENCE_SECONDS * SAMPLE_RATE), SAMPLE_RATE)
    factor = source["spd"][len(source["spd"]) // 2] / product["spd_base"]
    return dsp.rms(MODELS[machine].render(ctx, product, factor, source["load"][0], None, 0.0))


def plan_sections(seed: int, machines: Sequence[str], sections: Sequence[int]) -> dict[tuple[str, int], dict]:
    """:func:`plan_section` for every machine type and section."""
    plans = {}
    for machine in machines:
        factory = plan_factory(seed, machine)
        plans.update({(machine, s): plan_section(seed, machine, s, factory) for s in sections})
    return plans


# --- one clip ---------------------------------------------------------------------------------------


def _clip_rng(seed: int, task: ClipTask) -> np.random.Generator:
    words = [
        seed,
        _machine_index(task.machine),
        task.section,
        DOMAINS.index(task.domain),
        SPLITS.index(task.split),
        LABELS.index(task.label),
        task.index,
    ]
    return np.random.default_rng(np.random.SeedSequence(words))


def synthesize_clip(
    task: ClipTask,
    plan: dict[str, Any],
    seed: int,
    duration: float,
    sample_rate: int = SAMPLE_RATE,
    channels: int = 1,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render one clip and its metadata (conditions, fault, SNR).

    ``channels=1``: float64 samples in [-1, 1] of one microphone, drawn per clip (``mic`` attribute).
    ``channels=2``: shape ``(n, 2)``, both microphones hearing the same moment (near left, far right,
    as DCASE 2026 clips); the file name then has no ``mic`` attribute.
    """
    rng = _clip_rng(seed, task)
    model = MODELS[task.machine]
    cond = plan[task.domain]
    spd = int(rng.choice(cond["spd"]))
    load = int(rng.choice(cond["load"]))
    mic = int(rng.choice(cond["mic"])) if channels == 1 else 0
    noise = str(rng.choice(cond["noise"]))
    kind, severity = None, 0.0
    if task.label == "anomaly":
        kind = str(rng.choice(model.anomaly_kinds))
        severity = float(rng.uniform(*SEVERITY_RANGE))
    ctx = Ctx(rng, int(round(duration * sample_rate)), sample_rate)
    product = plan["product"] if kind is None else model.faulty_unit(plan["product"], rng, severity)
    source = model.render(ctx, product, spd / plan["product"]["spd_base"], load, kind, severity)
    background = render_background(ctx, noise)
    snr = cond["snr_db"] + cond.get("snr_jitter_db", SNR_JITTER_DB) * rng.uniform(-1.0, 1.0)
    ref = plan["ref_rms"]
    noise_scale = ref * 10.0 ** (-snr / 20.0)
    if channels == 1:
        mix = _at_microphone(source, plan, mic, sample_rate) + noise_scale * background
    else:
        # one moment, two positions: each microphone has its own path from the machine; the far one
        # also hears the hall through its own colouring (its mic-path bands applied to the background)
        near = _at_microphone(source, plan, 1, sample_rate) + noise_scale * background
        far_background = dsp.equalise(background, plan["mics"]["2"], sample_rate)
        far = _at_microphone(source, plan, 2, sample_rate) + noise_scale * far_background
        mix = np.stack([near, far], axis=1)
    gain = 10.0 ** ((OUTPUT_RMS_DBFS + MIC_GAIN_STD_DB * rng.standard_normal()) / 20.0)
    gain /= ref * np.sqrt(1.0 + 10.0 ** (-cond["snr_db"] / 10.0))
    wave = gain * mix
    peak = float(np.max(np.abs(wave)))
    limited = peak > PEAK_LIMIT
    if limited:  # rare: a loud fault; scale the clip down rather than clip it
        wave *= PEAK_LIMIT / peak
    meta = {
        "spd": spd,
        "load": load,
        "mic": mic if channels == 1 else "",
        "noise": noise,
        "snr_db": round(float(snr), 2),
        "anomaly_kind": kind or "",
        "severity": round(severity, 4),
        "peak_limited": int(limited),
    }
    return wave, meta


def _at_microphone(source: np.ndarray, plan: dict[str, Any], mic: int, sample_rate: int) -> np.ndarray:
    """The machine's sound at microphone ``mic``: the section's mounting, then the position's path."""
    heard = dsp.equalise(source, plan["mount"] + plan["mics"][str(mic)], sample_rate)
    return heard * 10.0 ** (-MIC2_LOSS_DB / 20.0) if mic == 2 else heard


def clip_name(task: ClipTask, meta: dict[str, Any]) -> str:
    """Official DCASE file name; attributes record the operating conditions a plant would log
    (speed set point, load, microphone), not the background, which nobody logs."""
    unit = MODELS[task.machine].spd_unit
    attrs = f"spd_{meta['spd']}{unit}_load_{meta['load']}"
    if meta["mic"] != "":  # two-channel clips hold both microphones
        attrs += f"_mic_{meta['mic']}"
    return f"section_{task.section:02d}_{task.domain}_{task.split}_{task.label}_{task.index:04d}_{attrs}.wav"


def clip_folder(task: ClipTask) -> str:
    return "train" if task.split == "train" else f"{task.domain}_test"


def to_pcm16(wave: np.ndarray) -> np.ndarray:
    return np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16)


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, to_pcm16(wave), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


# --- worker side ------------------------------------------------------------------------------------

_WORKER_STATE: dict[str, Any] = {}


def _init_worker(plans: dict, seed: int, duration: float, sample_rate: int, out_dir: str, channels: int = 1) -> None:
    _WORKER_STATE.update(
        plans=plans, seed=seed, duration=duration, sample_rate=sample_rate, out_dir=out_dir, channels=channels
    )


def _write_clip(task: ClipTask) -> dict[str, Any]:
    st = _WORKER_STATE
    plan = st["plans"][(task.machine, task.section)]
    wave, meta = synthesize_clip(task, plan, st["seed"], st["duration"], st["sample_rate"], st["channels"])
    rel = Path(task.machine) / clip_folder(task) / clip_name(task, meta)
    data = wav_bytes(wave, st["sample_rate"])
    atomic_write_bytes(Path(st["out_dir"]) / rel, data)
    return {"path": rel.as_posix(), **asdict(task), **meta, "n_bytes": len(data)}


def _pool_context() -> multiprocessing.context.BaseContext:
    # never fork: forked children inherit OpenMP/FAISS thread state of the parent and can hang.
    # spawn rather than forkserver: spawned workers are children of this process, so the caller's
    # `/usr/bin/time` counts their CPU (a forkserver's workers belong to its server and are missed).
    return multiprocessing.get_context("spawn")


# --- the data set -----------------------------------------------------------------------------------


def clip_tasks(preset: Preset) -> list[ClipTask]:
    """Every clip of a preset, in a fixed order."""
    tasks = []
    for machine in preset.machines:
        for section in preset.sections:
            for domain, n_train in (("source", preset.n_source_train), ("target", preset.n_target_train)):
                tasks += [ClipTask(machine, section, domain, "train", "normal", i) for i in range(n_train)]
            for domain in DOMAINS:
                for label in LABELS:
                    n_test = preset.n_test_per_class
                    tasks += [ClipTask(machine, section, domain, "test", label, i) for i in range(n_test)]
    return tasks


def _prepare_out_dir(out_dir: Path, machines: Sequence[str], overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output path {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise DataError(
                f"output folder {out_dir} exists and is not empty; pass overwrite=True (--overwrite) to replace it"
            )
        _remove_previous(out_dir, machines)
    out_dir.mkdir(parents=True, exist_ok=True)


def _remove_previous(out_dir: Path, machines: Sequence[str]) -> None:
    """Delete earlier generated WAVs of these machine types (only ``section_*.wav``), so no stale clip stays."""
    removed = 0
    for machine in machines:
        for folder in ("train", "source_test", "target_test"):
            for path in (out_dir / machine / folder).glob("section_*.wav"):
                path.unlink()
                removed += 1
    for name in ("synthetic.json", "synthetic_clips.csv"):
        (out_dir / name).unlink(missing_ok=True)
    log.info("overwrite: removed %d earlier clips from %s", removed, out_dir)


def _run_tasks(
    tasks: list[ClipTask], init_args: tuple, workers: int, progress: bool
) -> Iterator[dict[str, Any]]:
    bar = tqdm(total=len(tasks), unit="clip", desc="synth", disable=not progress)
    try:
        if workers <= 1:
            _init_worker(*init_args)
            for task in tasks:
                yield _write_clip(task)
                bar.update()
        else:
            chunk = max(1, min(32, len(tasks) // (4 * workers)))
            pool = ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_init_worker, initargs=init_args)
            try:
                for row in pool.map(_write_clip, tasks, chunksize=chunk):
                    yield row
                    bar.update()
            except BaseException:  # Ctrl-C or an error: drop the queued clips instead of finishing them
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
    finally:
        bar.close()


def _section_record(plan: dict[str, Any]) -> dict[str, Any]:
    model = MODELS[plan["machine"]]
    return {
        "shift": plan["shift"],
        "source": plan["source"],
        "target": plan["target"],
        "product": plan["product"],
        "mount": plan["mount"],
        "reference_rms": plan["ref_rms"],
        "spd_unit": model.spd_unit,
    }


def _dataset_record(preset: Preset, seed: int, plans: dict) -> dict[str, Any]:
    machines = {}
    for machine in preset.machines:
        model = MODELS[machine]
        machines[machine] = {
            "spd": model.spd_meaning,
            "load": model.load_meaning,
            "anomaly_kinds": model.anomaly_meaning,
            "anomaly_gain": ANOMALY_GAIN[machine],
            "factory": plan_factory(seed, machine),
            "sections": {f"{s:02d}": _section_record(plans[(machine, s)]) for s in preset.sections},
        }
    return {
        "generator": "hybrid_asd.data.synthetic",
        "version": SYNTH_VERSION,
        "hybrid_asd_version": __version__,
        "numpy_version": np.__version__,
        "preset": preset.name,
        "settings": asdict(preset),
        "seed": seed,
        "noise_types": NOISE_TYPES,
        "mix": {
            "output_rms_dbfs": OUTPUT_RMS_DBFS,
            "mic_gain_std_db": MIC_GAIN_STD_DB,
            "snr_range_db": list(SNR_RANGE_DB),
            "snr_jitter_db": SNR_JITTER_DB,
            "mic2_loss_db": MIC2_LOSS_DB,
            "severity_range": list(SEVERITY_RANGE),
        },
        "machines": machines,
    }


_CSV_COLUMNS = (
    "path", "machine", "section", "domain", "split", "label", "index",
    "spd", "load", "mic", "noise", "snr_db", "anomaly_kind", "severity", "peak_limited",
)  # fmt: skip


def _write_clip_table(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["path"]))


def generate(
    out_dir: str | os.PathLike,
    preset: str = "demo",
    seed: int = 0,
    machines: list[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 1,
    **preset_overrides: Any,
) -> SynthSummary:
    """Generate a synthetic data set into ``out_dir``; return a summary.

    Args:
        out_dir: the data root; ``<out_dir>/<machine>/{train,source_test,target_test}/`` are written.
        preset: "tiny", "demo" or "full" (see :data:`PRESETS`).
        seed: the data set's seed; the same seed gives byte-identical files.
        machines: machine types to generate (default: the preset's), from :data:`MACHINE_TYPES`.
        overwrite: allow a non-empty ``out_dir``; earlier clips of these machine types are removed.
        progress: show a tqdm progress bar.
        workers: processes (started with ``spawn``, never fork); the files do not depend on it.
            As with any spawned pool, a script calling this with ``workers > 1`` must do so under
            ``if __name__ == "__main__":``.
        **preset_overrides: ``n_source_train``, ``n_target_train``, ``n_test_per_class``,
            ``duration`` (s), ``sections`` (a count or a list of section numbers), ``machines``,
            ``channels`` (1: one microphone per clip, named in the ``mic`` attribute; 2: stereo clips
            with the near microphone left and the far one right, as DCASE 2026).

    Raises:
        ConfigError: unknown preset, machine type or override, or a size that gives zero clips.
        DataError: ``out_dir`` is not empty and ``overwrite`` is false, or is a file.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a whole number >= 0, got {seed!r}")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ConfigError(f"workers must be a whole number >= 1, got {workers!r}")
    resolved = resolve_preset(preset, machines, **preset_overrides)
    out = Path(out_dir)
    _prepare_out_dir(out, resolved.machines, overwrite)

    start = time.perf_counter()
    plans = plan_sections(int(seed), resolved.machines, resolved.sections)
    tasks = clip_tasks(resolved)
    log.info(
        "generating %d clips (%s preset, %d machine types x %d sections, %.1f s each) into %s",
        len(tasks), resolved.name, len(resolved.machines), len(resolved.sections), resolved.duration, out,
    )  # fmt: skip
    init_args = (plans, int(seed), float(resolved.duration), resolved.sample_rate, str(out), resolved.channels)
    rows = list(_run_tasks(tasks, init_args, int(workers), progress))
    seconds = time.perf_counter() - start

    _write_clip_table(out / "synthetic_clips.csv", rows)
    atomic_write_json(out / "synthetic.json", _dataset_record(resolved, int(seed), plans))
    counts = {m: sum(r["machine"] == m for r in rows) for m in resolved.machines}
    summary = SynthSummary(out, resolved, int(seed), len(rows), sum(r["n_bytes"] for r in rows), seconds, counts)
    log.info("%s", summary.describe())
    return summary
