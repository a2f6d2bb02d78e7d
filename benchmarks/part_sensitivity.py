"""Part sensitivity: which parts of a section's sound do the demo's trained systems react to?

For each machine type of a finished demo run, the source-domain normal test clips are rendered again with
the same per-clip randomness (so the same speeds, loads, microphones, background and phases) but with one
*part* of their section's product changed by ``--scale`` times the spread between two sections
(``MachineModel.variant(..., parts=(part,))``: resonances, harmonic profiles, base rates, scalar gains,
modulation depths; or the section's mounting transfer path drawn again). Two more renders take a whole
component from the next section of the run: its product (``neighbour_product``: would the system notice
another unit of the product?) or its source operating conditions (``neighbour_conditions``: set points and
loads). Every system of the run (``hybrid_asd.load_system``: the stages' own code) scores the original and
the changed renders; the AUC of changed against original says how far the system moved (0.5: not at all).

Why: a faulty unit (generator 2.1.0's ``faulty_unit``) is its section's product moved along these same
parts, so a system that does not react to them cannot see that half of every fault. On fan, the demo's kNN
on section-ID embeddings reacts to the resonances and the mounting; on gearbox and pump no system reacts
to any single part, only to a whole other unit (docs/synthetic.md, *Part sensitivity*), and those are where the
benchmark still ranks methods the wrong way.

    python benchmarks/part_sensitivity.py --demo exp/fidelity/seed0 --out exp/part_sensitivity/seed0 [--md t.md]

The "original" renders are the run's own clips, byte for byte, while the generator is unchanged (checked).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_proxy import SYSTEMS, demo_preset, run_system, write_report  # noqa: E402

from hybrid_asd.data import synthetic  # noqa: E402
from hybrid_asd.data.synth.machines import MODELS  # noqa: E402
from hybrid_asd.errors import ConfigError, DataError  # noqa: E402
from hybrid_asd.utils import atomic_write_bytes  # noqa: E402

PRODUCT_PARTS = ("resonances", "profiles", "rates", "gains", "depths")
MOUNT = "mount"
NEIGHBOUR_PRODUCT = "neighbour_product"
NEIGHBOUR_CONDITIONS = "neighbour_conditions"
NEIGHBOUR_PARTS = (NEIGHBOUR_PRODUCT, NEIGHBOUR_CONDITIONS)
ORIGINAL = "original"


def parts_of(machine: str, n_sections: int = 1) -> list[str]:
    """The parts a section of ``machine`` differs in: its model's non-empty variation groups, the mounting and,
    when the run has more than one section, the next section's product and operating conditions."""
    variation = MODELS[machine].variation
    parts = [p for p in PRODUCT_PARTS if variation.get(p)] + [MOUNT]
    return parts + list(NEIGHBOUR_PARTS) if n_sections > 1 else parts


def changed_plan(plan: dict, part: str, scale: float, rng: np.random.Generator, neighbour: dict | None = None) -> dict:
    """``plan`` with its product moved along ``part`` by ``scale`` between-section spreads, its mounting drawn
    again, or (``neighbour_*``) the product or source operating conditions of ``neighbour``, another section's
    plan; everything else as it was. A neighbour's product comes with its reference level (each section's
    clips are levelled by their own product's), its conditions without."""
    out = copy.deepcopy(plan)
    if part == MOUNT:
        out["mount"] = synthetic.draw_mounting(rng)
    elif part in PRODUCT_PARTS:
        out["product"] = MODELS[plan["machine"]].variant(plan["product"], rng, scale=scale, parts=(part,))
    elif part in NEIGHBOUR_PARTS:
        if neighbour is None or neighbour["machine"] != plan["machine"] or neighbour["section"] == plan["section"]:
            raise ConfigError(f"part {part!r} needs the plan of another section of {plan['machine']}")
        if part == NEIGHBOUR_PRODUCT:
            out["product"], out["ref_rms"] = copy.deepcopy(neighbour["product"]), neighbour["ref_rms"]
        else:
            out["source"] = copy.deepcopy(neighbour["source"])
    elif part != ORIGINAL:
        raise ConfigError(f"unknown part {part!r}; choose from {PRODUCT_PARTS + (MOUNT,) + NEIGHBOUR_PARTS}")
    return out


def render_variants(preset: synthetic.Preset, seed: int, machine: str, n_clips: int, scale: float,
                    out: Path, progress: bool = True) -> dict[tuple[str, synthetic.ClipTask], str]:
    """Paths of the original and every part-changed render of the first ``n_clips`` source test normals per
    section. Each changed render has its own changed product, drawn from the clip's section and index, as
    every anomalous clip has its own faulty unit (``faulty_unit``)."""
    plans = synthetic.plan_sections(seed, [machine], preset.sections)
    tasks = [t for t in synthetic.clip_tasks(preset) if t.machine == machine and t.split == "test"
             and t.label == "normal" and t.domain == "source" and t.index < n_clips]
    if not tasks:
        raise DataError(f"no source test normal clips of {machine} in the run's preset")
    paths = {}
    sections = list(preset.sections)
    variants = [ORIGINAL] + parts_of(machine, len(sections))
    for v_idx, variant in enumerate(tqdm(variants, desc=machine, disable=not progress)):
        for t in tasks:
            rng = np.random.default_rng([seed, synthetic.MACHINE_TYPES.index(machine), t.section, t.index, 4242,
                                         v_idx])
            neighbour = plans[(machine, sections[(sections.index(t.section) + 1) % len(sections)])]
            plan = changed_plan(plans[(machine, t.section)], variant, scale, rng, neighbour)
            wave, meta = synthetic.synthesize_clip(t, plan, seed, preset.duration, preset.sample_rate,
                                                   preset.channels)
            path = out / variant / machine / synthetic.clip_folder(t) / synthetic.clip_name(t, meta)
            atomic_write_bytes(path, synthetic.wav_bytes(wave, preset.sample_rate))
            paths[(variant, t)] = str(path)
    return paths


def paired_aucs(scores: dict[tuple[str, synthetic.ClipTask], float]) -> dict[str, float]:
    """AUC of each changed variant's scores against the originals' (0.5: the part moves nothing)."""
    original = [s for (v, _), s in scores.items() if v == ORIGINAL]
    out = {}
    for variant in dict.fromkeys(v for v, _ in scores if v != ORIGINAL):
        changed = [s for (v, _), s in scores.items() if v == variant]
        y = np.r_[np.zeros(len(original)), np.ones(len(changed))]
        out[variant] = float(roc_auc_score(y, np.r_[original, changed]))
    return out


def sensitivity(demo: Path, machine: str, paths: dict, seed: int, batch_size: int = 64) -> dict[str, dict]:
    """Per system of the run (named as in the demo's table): the AUC of every part."""
    results = {}
    for config in sorted({c for c, _ in SYSTEMS}):
        system = run_system(demo, config, machine, seed)
        records = {r.path: r.members for r in system.score(list(paths.values()), batch_size=batch_size)}
        for (cfg, member), name in SYSTEMS.items():
            if cfg == config and member in {m.name for m in system.members}:
                results[name] = paired_aucs({key: records[p][member].raw for key, p in paths.items()})
    return results


def format_table(all_results: dict[str, dict[str, dict]], scale: float, seed: int) -> str:
    lines = [f"Part sensitivity, seed {seed}: AUC of renders with one part changed by {scale:g} between-section "
             "spread(s) against the same clips unchanged (0.5: no reaction).", ""]
    for machine, per_system in all_results.items():
        parts = list(next(iter(per_system.values())))
        lines += [f"| {machine} | " + " | ".join(parts) + " |", "|---|" + "---|" * len(parts)]
        for name, aucs in per_system.items():
            lines.append(f"| {name} | " + " | ".join(f"{aucs[p]:.2f}" for p in parts) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, required=True, help="a finished `hybrid-asd demo` output folder")
    ap.add_argument("--out", type=Path, required=True, help="where the renders and results.json go")
    ap.add_argument("--machines", nargs="+", help="machine types (default: every one of the run)")
    ap.add_argument("--clips", type=int, default=20, help="source test normals per section (default 20)")
    ap.add_argument("--scale", type=float, default=1.0, help="change in between-section spreads (default 1)")
    ap.add_argument("--md", type=Path, help="also write the printed tables to this markdown file")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = ap.parse_args(argv)
    preset, seed, version = demo_preset(args.demo / "data")
    if version != synthetic.SYNTH_VERSION:
        raise DataError(f"the run was made with generator {version}, this is {synthetic.SYNTH_VERSION}: "
                        "its originals would not be its own clips")
    machines = args.machines or list(preset.machines)
    unknown = sorted(set(machines) - set(preset.machines))
    if unknown:
        raise ConfigError(f"--machines {unknown} not in the run (it has {list(preset.machines)})")
    import torch

    torch.set_num_threads(1)
    results = {}
    for machine in machines:
        paths = render_variants(preset, seed, machine, args.clips, args.scale, args.out / "renders",
                                progress=not args.no_progress)
        results[machine] = sensitivity(args.demo, machine, paths, seed)
    write_report(format_table(results, args.scale, seed), results, args.out, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
