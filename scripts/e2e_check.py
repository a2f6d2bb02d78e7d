"""End-to-end check of the workflows of issue #14, through the command line as a user runs them.

    python scripts/e2e_check.py --out /tmp/e2e [--data-root DIR] [--machine fan] [--quick]

1. A demo-like experiment (``demo_hybrid`` on one machine type of the synthetic ``demo`` preset,
   generated into ``OUT/data`` unless ``--data-root`` is given) through every stage.
2. Decision thresholds: for every score table (OE, detectors, fused) and section, where the
   source-domain threshold lies among the section's source test normal scores; the criterion is
   a threshold between their 50th and 99.9th percentiles for at least 80 % of the pairs.
3. ``adapt`` with three new target-domain clips of section 01 (generated with six target training
   clips per section; the last three are new), then ``fuse``, ``evaluate`` and ``report``: every
   table holds the new clips, every stage is complete, the report names nothing stale.
4. MIMII: the shared 8-channel clips (``../shared/data/mimii-8ch``), each cut into five 2 s clips
   (8 channels kept), run with ``--mimii-test-normals 2`` (detectors on log-mel statistics: one id
   is one class, too few for a section classifier).
5. The cross-experiment fuse of docs/recipes.md: ``wilkinghoff2021_serial`` and ``lopez2021_parallel``
   (small CNN instead of MobileNetV2, few epochs), fused with ``--tune`` and then ``--weights``.

Writes ``OUT/e2e_summary.json`` and prints a markdown summary; exits 1 when a check fails.
``--quick`` trains one epoch everywhere (a smoke test of this script). Rerun it on other data (e.g.
a new generator version) with ``--data-root``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "hybrid_asd" / "configs"
SHARED = ROOT.parent / "shared" / "data"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``hybrid-asd ARGS`` in a fresh process, as a user runs it."""
    cmd = [sys.executable, "-m", "hybrid_asd.cli", "--log-level", "WARNING", *args]
    print("$ hybrid-asd " + " ".join(args), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): hybrid-asd {' '.join(args)}\n{proc.stderr[-3000:]}")
    return proc


def official_score(result_csv: Path) -> float:
    for line in result_csv.read_text().splitlines():
        if line.startswith("official score"):
            return float(line.split(",")[-1])
    raise ValueError(f"{result_csv}: no official score row")


# --- 1 + 2: the demo experiment and its thresholds ------------------------------------------------------
def demo_experiment(out: Path, data: Path, machine: str, quick: bool) -> Path:
    exp = out / "exp" / "demo_hybrid" / machine / "seed0"
    sets = ["--set", "extractor.epochs=1"] if quick else []
    cli("run", "--exp", str(exp), "--config", str(CONFIGS / "demo_hybrid.yaml"), "--data-root", str(data),
        "--machine", machine, "--no-progress", *sets)
    return exp


def threshold_positions(exp: Path) -> list[dict]:
    from hybrid_asd.evaluation.thresholds import read_thresholds
    from hybrid_asd.experiment import Experiment
    from hybrid_asd.scores import ScoreTable

    e = Experiment(exp)
    rows = []
    tables = {**e.score_table_paths(), "fused": e.fusion.fused}
    for table_id, path in tables.items():
        table = ScoreTable.from_csv(path, table_id)
        thresholds = read_thresholds(e.thresholds_path(table_id))
        for (machine, section, domain), threshold in sorted(thresholds.items()):
            if domain != "source":
                continue
            normal = table.select(split="test", section=section, domain="source", label="normal").scores
            if not len(normal):
                continue
            p50, p999 = np.quantile(normal, [0.5, 0.999])
            rows.append({"table": table_id, "section": section, "threshold": float(threshold),
                         "p50": float(p50), "p99.9": float(p999),
                         "percentile": float(100 * np.mean(normal <= threshold)),
                         "inside": bool(p50 <= threshold <= p999)})
    return rows


# --- 3: adapt ---------------------------------------------------------------------------------------------
def new_target_clips(out: Path, data: Path, machine: str) -> Path:
    """Three new target-domain normal training clips of section 01: the generator run with six target
    training clips per section (the data set's own seed), of which the last three are new."""
    from hybrid_asd.data.synthetic import generate

    record = json.loads((data / "synthetic.json").read_text())
    more = out / "more_target"
    if more.exists():
        shutil.rmtree(more)
    generate(more, preset=record["preset"], seed=record["seed"], machines=[machine], progress=False,
             sections=[1], n_target_train=6, n_source_train=1, n_test_per_class=1)
    new = out / "new_clips" / machine / "train"
    if new.parent.parent.exists():
        shutil.rmtree(new.parent.parent)
    new.mkdir(parents=True)
    for src in sorted((more / machine / "train").glob("section_01_target_train_normal_000[345]_*.wav")):
        shutil.copy(src, new / src.name.replace("normal_000", "normal_090"))
    return new


def adapt_check(exp: Path, new: Path) -> dict:
    from hybrid_asd.config import load_config
    from hybrid_asd.evaluation.report_data import load_experiment
    from hybrid_asd.experiment import Experiment
    from hybrid_asd.scores import ScoreTable
    from hybrid_asd.stages import STAGES

    e = Experiment(exp)
    before = official_score(e.result_path("fused"))
    cli("adapt", "--exp", str(exp), str(new), "--no-progress")
    cli("fuse", "--exp", str(exp), "--force", "--no-progress")
    cli("evaluate", "--exp", str(exp), "--force", "--no-progress")
    cli("report", str(exp))
    config = load_config(e.config_path)
    new_paths = {str(p.resolve()) for p in new.iterdir()}
    tables = {**e.score_table_paths(), "fused": e.fusion.fused}
    holds = {tid: new_paths <= {str(c.path) for c in ScoreTable.from_csv(p, tid).select(split="train").clips}
             for tid, p in tables.items()}
    notes = [n.text for n in load_experiment(exp).notes if "stale" in n.text]
    complete = [s.name for s in STAGES if e.stage_done(s.name, config)]
    return {"official_before": before, "official_after": official_score(e.result_path("fused")),
            "tables_with_new_clips": holds, "stages_complete": complete, "stale_notes": notes,
            "ok": all(holds.values()) and len(complete) == len(STAGES) and not notes}


# --- 4: MIMII ---------------------------------------------------------------------------------------------
def mimii_folder(out: Path, pieces: int = 5) -> Path:
    """The shared 8-channel MIMII clips, each cut into ``pieces`` clips of equal length (MIMII layout)."""
    src = SHARED / "mimii-8ch"
    if not src.is_dir():
        raise SystemExit(f"{src} not found: the MIMII check needs the shared 8-channel clips")
    root = out / "mimii"
    if root.exists():
        shutil.rmtree(root)
    for wav in sorted(src.glob("*/id_*/*/*.wav")):
        audio, rate = sf.read(wav, always_2d=True)
        step = len(audio) // pieces
        folder = root / wav.relative_to(src).parent
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(pieces):
            sf.write(folder / f"{int(wav.stem) * pieces + i:08d}.wav", audio[i * step:(i + 1) * step], rate,
                     subtype="PCM_16")
    return root


def mimii_check(out: Path) -> dict:
    from hybrid_asd.evaluation.submission import read_score_file

    data = mimii_folder(out)
    results = {}
    for machine in ("pump", "slider"):
        exp = out / "exp_mimii" / machine
        cli("run", "--exp", str(exp), "--data-root", str(data), "--machine", machine, "--mimii-test-normals", "2",
            "--set", "extractor=null", "--set",
            "detectors=[{name: knn, input: logmel_stats, conf: {k: 1, metric: l2}, adaptation: {mode: none}}]",
            "--overwrite", "--no-progress")
        names = sorted(read_score_file(exp / "submission" / "knn" / f"anomaly_score_{machine}_section_00_source_test.csv"))
        results[machine] = {"official_score": official_score(exp / "eval" / "result_fused.csv"), "test_clips": names}
    ok = all(any(n.startswith("normal_id_00_") for n in r["test_clips"]) and
             any(n.startswith("anomaly_id_00_") for n in r["test_clips"]) for r in results.values())
    return {"machines": results, "ok": ok}


# --- 5: the cross-experiment fuse of docs/recipes.md --------------------------------------------------------
def cross_fuse_check(out: Path, data: Path, machine: str, quick: bool) -> dict:
    epochs = "1" if quick else "5"
    exps = {}
    for name in ("wilkinghoff2021_serial", "lopez2021_parallel"):
        exp = out / "exp" / name / machine / "seed0"
        small = ["--set", "extractor.backbone={name: tiny_cnn, conf: {channels: [16, 32, 64]}}",
                 "--set", f"extractor.epochs={epochs}", "--set", "extractor.max_patches_per_clip=8",
                 "--set", "extractor.embedding_dim=64"]
        if name == "lopez2021_parallel":
            small += ["--set", f"detectors.0.conf.epochs={'2' if quick else '50'}"]
        cli("run", "--exp", str(exp), "--config", str(CONFIGS / f"{name}.yaml"), "--data-root", str(data),
            "--machine", machine, "--no-progress", *small)
        exps[name] = exp
    dev, evaluated = out / "ours" / machine / "dev", out / "ours" / machine / "eval"
    members = ["lopez2021_parallel/oe", "knn", "cflow"]
    tuned = cli("fuse", "--scores", *map(str, exps.values()), "--detectors", *members, "--tune", "--out", str(dev))
    cli("fuse", "--scores", *map(str, exps.values()), "--detectors", *members,
        "--weights", str(dev / "weights.yaml"), "--out", str(evaluated))
    import yaml

    weights = yaml.safe_load((dev / "weights.yaml").read_text())["ensemble"]
    score_line = [line for line in tuned.stdout.splitlines() if line.startswith("official score")]
    return {"members": weights["members"], "weights": weights["weights"], "report": score_line,
            "ok": sorted(weights["members"]) == sorted(members)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, default=None, help="synthetic demo data (default: generate)")
    parser.add_argument("--machine", default="fan")
    parser.add_argument("--quick", action="store_true", help="one training epoch everywhere (smoke test)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["demo", "adapt", "mimii", "cross"])
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = args.data_root.resolve() if args.data_root else out / "data"
    if not args.data_root and not (data / "synthetic.json").is_file():
        cli("synth", "--preset", "demo", "--machines", args.machine, "--out", str(data), "--no-progress")
    summary: dict = {"data": str(data), "machine": args.machine, "quick": args.quick}
    if "demo" not in args.skip:
        exp = demo_experiment(out, data, args.machine, args.quick)
        positions = threshold_positions(exp)
        share = float(np.mean([r["inside"] for r in positions]))
        summary["thresholds"] = {"pairs": positions, "share_inside": share, "ok": share >= 0.8}
        summary["demo_official"] = {t: official_score(exp / "eval" / f"result_{t}.csv")
                                    for t in ("oe", "knn", "mahalanobis", "fused")}
        if "adapt" not in args.skip:
            summary["adapt"] = adapt_check(exp, new_target_clips(out, data, args.machine))
    if "mimii" not in args.skip:
        summary["mimii"] = mimii_check(out)
    if "cross" not in args.skip:
        summary["cross_fuse"] = cross_fuse_check(out, data, args.machine, args.quick)
    (out / "e2e_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    failed = [k for k, v in summary.items() if isinstance(v, dict) and v.get("ok") is False]
    if failed:
        raise SystemExit(f"checks failed: {', '.join(failed)}")


def format_summary(summary: dict) -> str:
    lines = [f"# e2e check ({summary['machine']}, data {summary['data']}{', quick' if summary['quick'] else ''})", ""]
    if "thresholds" in summary:
        th = summary["thresholds"]
        lines += ["| table | section | source threshold | test normal p50 | p99.9 | percentile | inside |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['table']} | {r['section']:02d} | {r['threshold']:.6g} | {r['p50']:.6g} | {r['p99.9']:.6g} | "
                  f"{r['percentile']:.1f} | {'yes' if r['inside'] else 'no'} |" for r in th["pairs"]]
        lines += ["", f"thresholds inside [p50, p99.9]: {100 * th['share_inside']:.0f} % of pairs (need >= 80 %)", "",
                  f"official scores: {json.dumps(summary['demo_official'])}", ""]
    for key in ("adapt", "mimii", "cross_fuse"):
        if key in summary:
            lines.append(f"{key}: {'ok' if summary[key]['ok'] else 'FAILED'}: "
                         f"{json.dumps({k: v for k, v in summary[key].items() if k != 'ok'})[:600]}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
