"""Generated DCASE 2025 / 2026 Task 2 data roots with the official folder layout and file names.

Names are those the official baseline (nttcslab/dcase2023_task2_baseline_ae) documents or ships:
2026 clips end in ``_noise_<n>`` (its README: ``section_00_source_test_normal_0000_car_A2_spd_28V_mic_1_noise_1.wav``)
and are two-channel (near microphone left, far right); 2025 names may hide their attributes
(``..._noAttribute.wav``, ``datasets/ground_truth_attributes/dcase2025t2``) or carry them
(``section_00_source_test_anomaly_0001_id_A1_spd_1_mic_2.wav``), and a machine type may have a
``supplemental/`` folder (``section_00_machine_0001_.wav``, README_legacy).

The audio is short, seeded and PCM16: left = a machine tone plus a little noise, right = the same tone
3 dB quieter with more noise (the far microphone), so channel selection is visible in the numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def tone(seconds: float, rng: np.random.Generator, freq: float, anomaly: bool = False) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(2 * np.pi * 2.7 * freq * t)
    if anomaly:  # an extra partial and clicks
        wave += 0.15 * np.sin(2 * np.pi * 3.3 * freq * t)
        wave[:: SR // 8] += 0.5
    return wave


def two_channel(seconds: float, rng: np.random.Generator, freq: float, anomaly: bool = False) -> np.ndarray:
    """``(frames, 2)``: near (left) and far (right) microphone."""
    machine = tone(seconds, rng, freq, anomaly)
    near = machine + 0.02 * rng.standard_normal(machine.size)
    far = machine * 10 ** (-3 / 20) + 0.08 * rng.standard_normal(machine.size)
    return np.clip(np.stack([near, far], axis=1), -1, 1).astype(np.float32)


def write_wav(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, SR, subtype="PCM_16")
    return path


ATTRS_2026 = {"ToyCar": "car_A2_spd_28V_mic_1", "fan": "m-n_W", "valveEmu": "pat_01"}


def write_dcase2026_dev(root: Path, machines=("ToyCar", "fan"), n_source: int = 8, n_target: int = 3,
                        n_test: int = 3, seconds: float = 1.0, seed: int = 0) -> dict[str, list[Path]]:
    """``root/<machine>/{train,test}/`` with two-channel 2026 names; returns the paths per split."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[Path]] = {"train": [], "test": []}
    for m, machine in enumerate(machines):
        attrs = ATTRS_2026.get(machine, "att_A")
        freq = 300.0 + 150.0 * m
        for domain, count, noise in (("source", n_source, 1), ("target", n_target, 2)):
            shift = 0.0 if domain == "source" else 40.0
            for i in range(count):
                name = f"section_00_{domain}_train_normal_{i:04d}_{attrs}_noise_{noise}.wav"
                out["train"].append(write_wav(root / machine / "train" / name,
                                              two_channel(seconds, rng, freq + shift)))
            for label in ("normal", "anomaly"):
                for i in range(n_test):
                    name = f"section_00_{domain}_test_{label}_{i:04d}_{attrs}_noise_{noise}.wav"
                    out["test"].append(write_wav(root / machine / "test" / name,
                                                 two_channel(seconds, rng, freq + shift, label == "anomaly")))
    return out


def write_dcase2025_dev(root: Path, machine: str = "bearing", n_source: int = 6, n_target: int = 2,
                        n_test: int = 2, n_supplemental: int = 3, seconds: float = 1.0,
                        seed: int = 1) -> dict[str, list[Path]]:
    """A mono 2025 machine folder with hidden attributes and a ``supplemental/`` folder holding clean
    machine clips (``section_00_machine_<n>_.wav``) and noise-only clips (``section_00_noise_<n>_.wav``;
    the kind word of noise-only clips is not in the baseline's material, see docs/dcase2025_2026.md)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[Path]] = {"train": [], "test": [], "supplemental": []}
    def mono(freq: float, anomaly: bool = False) -> np.ndarray:
        wave = tone(seconds, rng, freq, anomaly)
        return np.clip(wave + 0.05 * rng.standard_normal(wave.size), -1, 1)

    for domain, count in (("source", n_source), ("target", n_target)):
        shift = 0.0 if domain == "source" else 40.0
        for i in range(count):
            name = f"section_00_{domain}_train_normal_{i:04d}_noAttribute.wav"
            out["train"].append(write_wav(root / machine / "train" / name, mono(400 + shift)))
        for label in ("normal", "anomaly"):
            for i in range(n_test):
                name = f"section_00_{domain}_test_{label}_{i:04d}_noAttribute.wav"
                out["test"].append(write_wav(root / machine / "test" / name, mono(400 + shift, label == "anomaly")))
    for i in range(1, n_supplemental + 1):
        clean = tone(seconds, rng, 400.0)
        out["supplemental"].append(write_wav(root / machine / "supplemental" / f"section_00_machine_{i:04d}_.wav",
                                             clean))
        noise = 0.2 * rng.standard_normal(clean.size)
        out["supplemental"].append(write_wav(root / machine / "supplemental" / f"section_00_noise_{i:04d}_.wav",
                                             noise))
    return out
