"""Fault-design proxy: what a change of the synthetic *faults* does to the demo's systems, in a minute.

Regenerates only the anomalous test clips of a finished demo run with the generator as it is now,
scores them with the run's trained systems (``hybrid_asd.load_system``: the stages' own code) and
evaluates every system with the run's normal scores. Normal clips never reach fault code (a test checks
it), so while only the faults change, the normal clips, the trained extractors and detectors and the
normal scores are exactly those of a full rerun: the figures equal a full ``hybrid-asd demo`` of the
changed generator (checked on generator 2.0.0 -> 2.1.0, docs/synthetic.md) at about 1/15 of its cost
(40 s instead of 11 min per seed on 2 cores). A change to normal sound (background, variants,
attributes) needs the full run (benchmarks/fidelity.py).

    python benchmarks/fault_proxy.py --demo exp/fidelity/seed0 --out exp/fault_proxy/seed0 [--md table.md]

To try other fault constants without editing the generator, scale fault strengths and set the fault drift
for this run only (every rendering process gets them; the table's first line and results.json record them):

    --fault-gain gearbox=1.5 --fault-gain pump.cavitation=2 --fault-drift 2 --fault-drift slider=1.5

Prints, pooled over machine types as the demo does, each system's official score and source/target AUC
and pAUC, its score per machine type, the differences the fidelity targets F2 and F4 read (serial
hybrid - AE, serial hybrid - Mahalanobis on statistics) and the AUC per fault kind and domain.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybrid_asd import demo  # noqa: E402
from hybrid_asd.data import synthetic  # noqa: E402
from hybrid_asd.data.synth import machines  # noqa: E402
from hybrid_asd.ensemble.fusion import FUSED_NAME  # noqa: E402
from hybrid_asd.errors import ConfigError, DataError  # noqa: E402
from hybrid_asd.evaluation.metrics import evaluate_scores  # noqa: E402
from hybrid_asd.scores import ScoreTable  # noqa: E402
from hybrid_asd.utils import atomic_write_bytes, atomic_write_json  # noqa: E402

# the demo's single systems by (config, score table), named as in its results table; rescored are those that
# are members of their experiment's system (load_system), which leaves out the OE baseline of demo_baselines
SYSTEMS = {(config, table): label for label, config, table in demo.SYSTEMS if table != FUSED_NAME}
AE, SERIAL, STATS = (SYSTEMS[key] for key in (("demo_baselines", "ae"), ("demo_hybrid", "knn"),
                                              ("demo_hybrid", "mahalanobis")))


@dataclass(frozen=True)
class Anomaly:
    """One regenerated anomalous test clip."""

    path: str
    machine: str
    section: int
    domain: str
    kind: str
    severity: float


@dataclass(frozen=True)
class FaultOverrides:
    """Fault constants for one proxy run: ``gains`` scale ``ANOMALY_GAIN[machine][kind]``; ``drift`` replaces
    every machine type's drift (key ``None``: ``FAULT_DRIFT`` and each type's own, e.g. the tonal types'
    ``TONAL_FAULT_DRIFT``) or one machine type's (which wins over the key ``None``)."""

    gains: dict[tuple[str, str], float] = field(default_factory=dict)
    drift: dict[str | None, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.gains or self.drift)

    def describe(self) -> dict[str, dict[str, float]]:
        return {"gain_scale": {f"{m}.{k}": v for (m, k), v in sorted(self.gains.items())},
                "drift": {m or "all": v for m, v in self.drift.items()}}


def _number(text: str, spec: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{option} {spec!r}: {text!r} is not a number") from None
    if not np.isfinite(value) or value < 0:
        raise ConfigError(f"{option} {spec!r}: the value must be a finite number >= 0")
    return value


def _machine(name: str, spec: str, option: str) -> str:
    if name not in machines.MODELS:
        raise ConfigError(f"{option} {spec!r}: unknown machine type {name!r}; choose from {sorted(machines.MODELS)}")
    return name


def parse_overrides(gains: list[str] | None = None, drifts: list[str] | None = None) -> FaultOverrides:
    """``--fault-gain MACHINE[.KIND]=SCALE`` and ``--fault-drift [MACHINE=]VALUE`` specs, checked against the
    generator's machine types and fault kinds (a typo is an error, not a silent no-op)."""
    scales: dict[tuple[str, str], float] = {}
    drift: dict[str | None, float] = {}
    for spec in gains or []:
        target, sep, value = spec.partition("=")
        if not sep:
            raise ConfigError(f"--fault-gain {spec!r}: expected MACHINE[.KIND]=SCALE, e.g. gearbox.wear=1.5")
        name, _, kind = target.partition(".")
        machine = _machine(name, spec, "--fault-gain")
        kinds = machines.MODELS[machine].anomaly_kinds
        if kind and kind not in kinds:
            raise ConfigError(f"--fault-gain {spec!r}: {machine} has no fault kind {kind!r}; choose from {list(kinds)}")
        for k in [kind] if kind else kinds:
            scales[(machine, k)] = _number(value, spec, "--fault-gain")
    for spec in drifts or []:
        name, sep, value = spec.rpartition("=")
        drift[_machine(name, spec, "--fault-drift") if sep else None] = _number(value, spec, "--fault-drift")
    return FaultOverrides(scales, drift)


def apply_overrides(overrides: FaultOverrides) -> None:
    """Set the fault constants in this process (a rendering worker's initializer too)."""
    for (machine, kind), scale in overrides.gains.items():
        machines.ANOMALY_GAIN[machine][kind] *= scale
    if None in overrides.drift:  # first, so that a machine type's own value wins whatever the order given
        machines.FAULT_DRIFT = overrides.drift[None]
        for model in machines.MODELS.values():
            model.fault_drift = None
    for machine, value in overrides.drift.items():
        if machine is not None:
            machines.MODELS[machine].fault_drift = value


@contextlib.contextmanager
def overridden(overrides: FaultOverrides) -> Iterator[None]:
    """The fault constants as ``overrides`` says while inside, as they were after."""
    gains, drift = copy.deepcopy(machines.ANOMALY_GAIN), machines.FAULT_DRIFT
    own = {m: model.fault_drift for m, model in machines.MODELS.items()}
    apply_overrides(overrides)
    try:
        yield
    finally:
        machines.ANOMALY_GAIN.clear()
        machines.ANOMALY_GAIN.update(gains)
        machines.FAULT_DRIFT = drift
        for m, value in own.items():
            machines.MODELS[m].fault_drift = value


def demo_preset(data_root: Path) -> tuple[synthetic.Preset, int, str]:
    """The preset, seed and generator version a demo run's data was made with (its synthetic.json)."""
    meta_path = data_root / "synthetic.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path} not found: --demo must be a finished `hybrid-asd demo` run (its data/ folder)")
    meta = json.loads(meta_path.read_text())
    s = meta["settings"]
    sizes = {key: s[key] for key in ("n_source_train", "n_target_train", "n_test_per_class", "duration", "sections",
                                     "channels")}
    return synthetic.resolve_preset(s["name"], s["machines"], **sizes), int(meta["seed"]), str(meta["version"])


def _render_anomaly(args: tuple) -> tuple[str, dict]:
    task, plan, seed, preset, out = args
    wave, meta = synthetic.synthesize_clip(task, plan, seed, preset.duration, preset.sample_rate, preset.channels)
    path = Path(out) / task.machine / synthetic.clip_folder(task) / synthetic.clip_name(task, meta)
    atomic_write_bytes(path, synthetic.wav_bytes(wave, preset.sample_rate))
    return str(path), meta


def regenerate_anomalies(preset: synthetic.Preset, seed: int, out: Path, workers: int = 2,
                         overrides: FaultOverrides | None = None) -> list[Anomaly]:
    """Every anomalous test clip of ``preset`` and ``seed``, rendered by the current generator into ``out``
    (with the fault constants changed by ``overrides``, if given)."""
    overrides = overrides or FaultOverrides()
    tasks = [t for t in synthetic.clip_tasks(preset) if t.label == "anomaly"]
    plans = synthetic.plan_sections(seed, preset.machines, preset.sections)
    jobs = [(t, plans[(t.machine, t.section)], seed, preset, str(out)) for t in tasks]
    if workers > 1:
        pool = synthetic._pool_context().Pool(workers, initializer=apply_overrides, initargs=(overrides,))
        with pool:
            rendered = pool.map(_render_anomaly, jobs, chunksize=8)
    else:
        with overridden(overrides):
            rendered = [_render_anomaly(j) for j in jobs]
    return [Anomaly(path, t.machine, t.section, t.domain, meta["anomaly_kind"], meta["severity"])
            for t, (path, meta) in zip(tasks, rendered)]


def merged_table(score_csv: Path, anomaly_scores: dict[Anomaly, float], name: str, out_csv: Path) -> ScoreTable:
    """The run's score table with its anomalous test rows replaced by ``anomaly_scores`` of one machine type."""
    with open(score_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DataError(f"{score_csv} has no rows")
    kept = [r for r in rows if not (r["split"] == "test" and r["label"] == "anomaly")]
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
        for a, score in anomaly_scores.items():
            writer.writerow({**{k: "" for k in rows[0]}, "path": a.path, "machine": a.machine,
                             "section": f"{a.section:02d}", "domain": a.domain, "split": "test",
                             "label": "anomaly", "score": repr(float(score))})
    return ScoreTable.from_csv(out_csv, name)


def kind_aucs(table: ScoreTable, anomalies: dict[str, Anomaly]) -> dict[tuple[str, str], float]:
    """AUC of each fault kind against the normal test clips of its section and domain, averaged over
    sections: ``{(kind, domain): auc}``."""
    per: dict[tuple[str, str], list[float]] = {}
    test = [(c, float(s)) for c, s in zip(table.clips, table.scores) if c.split == "test"]
    for domain in ("source", "target"):
        for section in sorted({c.section for c, _ in test}):
            rows = [(c, s) for c, s in test if c.section == section and c.domain == domain]
            normal = [s for c, s in rows if c.label == "normal"]
            by_kind: dict[str, list[float]] = {}
            for c, s in rows:
                if c.label == "anomaly":
                    by_kind.setdefault(anomalies[str(c.path)].kind, []).append(s)
            for kind, scores in by_kind.items():
                auc = roc_auc_score([0] * len(normal) + [1] * len(scores), normal + scores)
                per.setdefault((kind, domain), []).append(float(auc))
    return {k: float(np.mean(v)) for k, v in per.items()}


def run_system(demo: Path, config: str, machine: str, seed: int):
    """The trained system (``hybrid_asd.load_system``) of one experiment of a finished demo run."""
    from hybrid_asd.monitor.system import load_system

    exp = demo / "exp" / config / machine / f"seed{seed}"
    if not exp.is_dir():
        raise DataError(f"{exp} not found: the demo run has no {config} experiment for {machine}")
    return load_system(exp)


def write_report(text: str, results: dict, out: Path, md: Path | None) -> None:
    """Print the tables; write ``out/results.json`` and, if asked, the tables to ``md``."""
    print(text)
    atomic_write_json(out / "results.json", results)
    if md:
        md.write_text(text + "\n")


def rescore(demo: Path, seed: int, anomalies: list[Anomaly], out: Path, batch_size: int = 64) -> dict:
    """Every demo system's pooled result with the regenerated anomalies, per machine type and per kind."""
    by_path = {a.path: a for a in anomalies}
    tables: dict[str, list[ScoreTable]] = {}
    kinds: dict[str, dict[str, dict]] = {}
    machines = sorted({a.machine for a in anomalies})
    for config in sorted({c for c, _ in SYSTEMS}):
        for machine in machines:
            exp = demo / "exp" / config / machine / f"seed{seed}"
            system = run_system(demo, config, machine, seed)
            members = {m.name for m in system.members}
            mine = [a for a in anomalies if a.machine == machine]
            records = system.score([a.path for a in mine], batch_size=batch_size)
            raw = {r.path: r.members for r in records}
            for (cfg, member), name in SYSTEMS.items():
                if cfg != config or member not in members:
                    continue
                scores = {a: raw[a.path][member].raw for a in mine}
                table = merged_table(exp / "scores" / f"{member}.csv", scores, name,
                                     out / "scores" / config / machine / f"{member}.csv")
                tables.setdefault(name, []).append(table)
                kinds.setdefault(name, {})[machine] = kind_aucs(table, by_path)
    results = {}
    for name, machine_tables in tables.items():
        res = evaluate_scores(ScoreTable.concat(machine_tables, name))
        by_domain = res.by_domain()
        results[name] = {
            "official_score": res.official_score,
            "source": by_domain["source"], "target": by_domain["target"],
            "machines": {t.clips[0].machine: evaluate_scores(t).official_score for t in machine_tables},
            "kinds": {m: {f"{k}/{d}": v for (k, d), v in per.items()} for m, per in kinds[name].items()},
        }
    return results


def format_results(results: dict, version: str, seed: int) -> str:
    lines = [f"Generator {version}, seed {seed}; official score pooled over machine types (the demo's way).", "",
             "| system | source AUC | source pAUC | target AUC | target pAUC | official | per machine type |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        per = ", ".join(f"{m} {v:.3f}" for m, v in r["machines"].items())
        lines.append(f"| {name} | {r['source']['auc']:.3f} | {r['source']['pauc']:.3f} | {r['target']['auc']:.3f} "
                     f"| {r['target']['pauc']:.3f} | {r['official_score']:.3f} | {per} |")
    if {AE, SERIAL, STATS} <= set(results):
        f2 = results[SERIAL]["official_score"] - results[AE]["official_score"]
        f4 = results[SERIAL]["official_score"] - results[STATS]["official_score"]
        lines += ["", f"F2 serial hybrid - AE: {f2:+.3f} (target: >= +0.03 as a mean over seeds); "
                      f"F4 serial hybrid - Mahalanobis on statistics: {f4:+.3f} (target: >= 0)"]
    lines += ["", "AUC per fault kind (mean over sections), source / target:", ""]
    for machine in sorted({m for r in results.values() for m in r["kinds"]}):
        keys = sorted({k.split("/")[0] for r in results.values() for k in r["kinds"].get(machine, {})})
        lines += [f"| {machine} | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for name, r in results.items():
            per = r["kinds"][machine]
            cells = [f"{per.get(k + '/source', float('nan')):.2f} / {per.get(k + '/target', float('nan')):.2f}"
                     for k in keys]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, required=True, help="a finished `hybrid-asd demo` output folder")
    ap.add_argument("--out", type=Path, required=True,
                    help="where the regenerated clips, merged score tables and results.json go")
    ap.add_argument("--md", type=Path, help="also write the printed tables to this markdown file")
    ap.add_argument("--workers", type=int, default=2, help="processes that render clips (default 2)")
    ap.add_argument("--fault-gain", action="append", metavar="MACHINE[.KIND]=SCALE",
                    help="multiply a machine type's fault strengths (ANOMALY_GAIN; all its kinds or one) by SCALE "
                         "for this run; repeatable")
    ap.add_argument("--fault-drift", action="append", metavar="[MACHINE=]VALUE",
                    help="the fault drift for this run: VALUE for every machine type (FAULT_DRIFT and the tonal types' "
                         "own TONAL_FAULT_DRIFT), MACHINE=VALUE for one (wins over VALUE); repeatable")
    args = ap.parse_args(argv)
    overrides = parse_overrides(args.fault_gain, args.fault_drift)
    preset, seed, version = demo_preset(args.demo / "data")
    anomalies = regenerate_anomalies(preset, seed, args.out / "data", args.workers, overrides)
    import torch

    torch.set_num_threads(max(1, args.workers))
    results = rescore(args.demo, seed, anomalies, args.out)
    generator = f"{synthetic.SYNTH_VERSION} (run made with {version})"
    if overrides:
        generator += f" with fault overrides {json.dumps(overrides.describe())}"
    text = format_results(results, generator, seed)
    if overrides:
        results = {"fault_overrides": overrides.describe(), **results}
    write_report(text, results, args.out, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
