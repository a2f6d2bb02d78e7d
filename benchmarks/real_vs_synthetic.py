"""Real DCASE clips against synthetic ones: simple signal statistics, side by side per machine type.

The synthetic benchmark is only as good as its agreement with real data. Besides the detector-level
targets of ``benchmarks/fidelity.py`` (published baseline and top-system results), this compares the
normal clips themselves with the real ones in ``../shared/data`` (DCASE 2023 Task 2 development clips,
section 00: two source training clips per machine type, some test clips), on the log-mel the detectors
see (``FeatureCache.logmel_batch``, the default front end: 128 mels, 1024/512, power 2, dB):

- **frame-energy std**: standard deviation over frames of the frame energy, dB (how stationary a clip is);
- **flatness**: spectral flatness of the clip's mean mel power spectrum, dB (0 = white, very negative =
  a few strong bands: tonal);
- **pair level**: level difference between two normal source training clips of section 00, dB (the
  clip-to-clip level nuisance that statistics-based detectors must absorb);
- **pair shape**: RMS difference of their mean log-mel spectra after removing that level difference, dB;
- **shift shape**: the same between a source training clip and a *target* test normal of section 00
  (the size of the domain shift in the spectrum; only where the real set has a target normal).

The real set is tiny (one training pair per machine type), so each real figure is one draw: read the
table for orders of magnitude and for directions that hold across machine types, not for one value.
The synthetic figures are medians over random pairs (``--pairs``) of the synthetic section 00.

    python benchmarks/real_vs_synthetic.py --out docs/real_vs_synthetic.md
    python benchmarks/real_vs_synthetic.py --synthetic exp/demo/data    # an existing synthetic data root

Without ``--synthetic`` it generates section 00 of each machine type (10 s clips, the clip lengths of the
real set; ``--seed``) into ``--work``.
"""

from __future__ import annotations

import argparse
import csv
import os
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REAL_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "dcase2023t2-samples" / "dev_data" / "raw"
# machine types present both in the real sample set and in the generator
MACHINES = ("fan", "gearbox", "slider", "valve", "ToyCar", "ToyTrain")
STATS = ("frame_energy_std_db", "flatness_db", "pair_level_db", "pair_shape_db", "shift_shape_db")


@dataclass(frozen=True)
class Clip:
    path: Path
    domain: str  # source | target
    split: str  # train | test
    label: str  # normal | anomaly


# --- statistics of log-mel spectrograms (n_mels, frames) in dB -------------------------------------------
def frame_energy_std_db(logmel: np.ndarray) -> float:
    """Standard deviation over frames of each frame's energy (mean mel power), dB."""
    energy = 10.0 * np.log10(np.mean(10.0 ** (logmel / 10.0), axis=0) + 1e-20)
    return float(np.std(energy))


def flatness_db(logmel: np.ndarray) -> float:
    """Spectral flatness (geometric / arithmetic mean) of the mean mel power spectrum, dB."""
    power = np.mean(10.0 ** (logmel / 10.0), axis=1) + 1e-20
    return float(10.0 * np.log10(np.exp(np.mean(np.log(power))) / np.mean(power)))


def mean_spectrum_db(logmel: np.ndarray) -> np.ndarray:
    """Mean mel power spectrum of a clip, dB per band."""
    return 10.0 * np.log10(np.mean(10.0 ** (logmel / 10.0), axis=1) + 1e-20)


def level_and_shape_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(|level difference|, RMS shape difference) of two mean spectra in dB; the level is the mean over
    bands of the difference, the shape what remains after removing it."""
    diff = a - b
    level = float(np.mean(diff))
    return abs(level), float(np.sqrt(np.mean((diff - level) ** 2)))


# --- clip lists ------------------------------------------------------------------------------------------
def real_clips(root: Path, machine: str) -> list[Clip]:
    """Section-00 clips of the real set, from DCASE file names (section_00_<domain>_<split>_<label>_...)."""
    clips = []
    for path in sorted((root / machine).rglob("section_00_*.wav")):
        parts = path.name.split("_")
        clips.append(Clip(path, parts[2], parts[3], parts[4]))
    return clips


def synthetic_clips(root: Path, machine: str) -> list[Clip]:
    with open(root / "synthetic_clips.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["machine"] == machine and int(r["section"]) == 0]
    return [Clip(root / r["path"], r["domain"], r["split"], r["label"]) for r in rows]


def generate_synthetic(work: Path, seed: int, machines: tuple[str, ...], clips: int = 40, seconds: float = 10.0,
                       workers: int = 2) -> Path:
    """Section 00 of each machine type: ``clips`` source training clips (and as many test clips per
    domain) of ``seconds`` (default 10 s, the real clips' length). Reused when already there."""
    from hybrid_asd.data import synthetic

    data = work / f"synthetic_seed{seed}_{len(machines)}types_{clips}x{seconds:g}s"
    if not (data / "synthetic.json").exists():
        synthetic.generate(data, preset="demo", seed=seed, machines=list(machines), sections=[0], n_source_train=clips,
                           n_target_train=3, n_test_per_class=max(clips // 4, 1), duration=seconds, progress=True,
                           workers=workers, overwrite=True)
    return data


# --- per machine type ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def front_end():  # noqa: ANN201
    """The default front end (built once; ``logmel_batch`` writes nothing to the cache folder)."""
    from hybrid_asd.config import Config
    from hybrid_asd.features.cache import FeatureCache

    config = Config()
    return FeatureCache(config.features, config.data, device="cpu")


def logmels(paths: list[Path]) -> dict[Path, np.ndarray]:
    from hybrid_asd.data.audio import load_audio

    cache = front_end()
    waves = [load_audio(p, **cache.audio_conf) for p in paths]
    return dict(zip(paths, cache.logmel_batch(waves)))


def machine_stats(clips: list[Clip], pairs: int, rng: np.random.Generator) -> dict[str, float | int | None]:
    """The statistics of one machine type; pair statistics are medians over up to ``pairs`` disjoint pairs."""
    normal_train = [c for c in clips if c.label == "normal" and c.split == "train" and c.domain == "source"]
    target_normal = [c for c in clips if c.label == "normal" and c.split == "test" and c.domain == "target"]
    order = rng.permutation(len(normal_train))
    train_pairs = [(normal_train[order[i]], normal_train[order[i + 1]]) for i in range(0, len(order) - 1, 2)][:pairs]
    shift_pairs = [(normal_train[order[i % len(order)]], t) for i, t in enumerate(target_normal[:pairs])]
    used = sorted({c.path for pair in train_pairs + shift_pairs for c in pair} | {c.path for c in normal_train[:2 * pairs]})
    mels = logmels(used)
    spectra = {p: mean_spectrum_db(m) for p, m in mels.items()}
    per_pair = [level_and_shape_difference(spectra[a.path], spectra[b.path]) for a, b in train_pairs]
    shift = [level_and_shape_difference(spectra[a.path], spectra[b.path])[1] for a, b in shift_pairs]
    return {
        "clips": len(used),
        "frame_energy_std_db": float(np.median([frame_energy_std_db(m) for m in mels.values()])),
        "flatness_db": float(np.median([flatness_db(m) for m in mels.values()])),
        "pair_level_db": float(np.median([p[0] for p in per_pair])) if per_pair else None,
        "pair_shape_db": float(np.median([p[1] for p in per_pair])) if per_pair else None,
        "shift_shape_db": float(np.median(shift)) if shift else None,
        "pairs": len(per_pair),
    }


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(rows: dict[str, dict[str, dict]], command: str) -> str:
    lines = ["# Real DCASE clips vs synthetic clips (normal sounds, section 00)", "",
             f"`{command}`; statistics defined in `benchmarks/real_vs_synthetic.py`. Real: one training pair per",
             "machine type (DCASE 2023 dev, ../shared/data); synthetic: medians over pairs. dB throughout.", "",
             "| machine | set | frame-energy std | flatness | pair level | pair shape | shift shape |",
             "|---|---|---|---|---|---|---|"]
    for machine, sets in rows.items():
        for name, s in sets.items():
            lines.append(f"| {machine} | {name} | " + " | ".join(fmt(s[k]) for k in STATS) + " |")
    lines += ["", "Median over machine types (real / synthetic):", ""]
    for key in STATS:
        real = [s["real"][key] for s in rows.values() if s["real"][key] is not None]
        synth = [s["synthetic"][key] for s in rows.values() if s["synthetic"][key] is not None]
        lines.append(f"- {key}: {fmt(float(np.median(real)) if real else None)} / "
                     f"{fmt(float(np.median(synth)) if synth else None)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", type=Path, default=REAL_DEFAULT, help="real clips: <root>/<machine>/{train,test}/")
    parser.add_argument("--synthetic", type=Path, help="an existing synthetic data root (default: generate one)")
    parser.add_argument("--work", type=Path, default=Path("exp/real_vs_synthetic"), help="where to generate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated synthetic set")
    parser.add_argument("--pairs", type=int, default=12, help="synthetic clip pairs per statistic")
    parser.add_argument("--clips", type=int, default=40, help="source training clips per generated machine type")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the generated clips")
    parser.add_argument("--workers", type=int, default=2, help="processes generating the synthetic clips")
    parser.add_argument("--machines", nargs="+", default=list(MACHINES), choices=MACHINES)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)
    if not args.real.is_dir():
        parser.error(f"--real {args.real}: no such folder (the real clips live in ../shared/data)")
    synth_root = args.synthetic or generate_synthetic(args.work, args.seed, tuple(args.machines), args.clips,
                                                       args.seconds, args.workers)
    rng = np.random.default_rng(args.seed)
    rows = {}
    for machine in args.machines:
        real = real_clips(args.real, machine)
        if not real:
            print(f"{machine}: no real clips under {args.real / machine}; skipped", file=sys.stderr)
            continue
        rows[machine] = {"real": machine_stats(real, 1, rng),
                         "synthetic": machine_stats(synthetic_clips(synth_root, machine), args.pairs, rng)}
    command = "python benchmarks/real_vs_synthetic.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(rows, command.strip())
    print(text)
    if args.out:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
