"""Judge an extractor config against the demo's systems on the demo's own data, seed by seed.

For each finished demo run ``<demo-root>/seed<k>`` (``hybrid-asd demo --out ... --seed k`` or
``benchmarks/fidelity.py``), this runs ``--config`` on the same data and seed for each machine type
(``hybrid-asd run``, skipped when its scores exist), evaluates each of its score tables over all machine
types together (the demo's pooling: score tables concatenated, harmonic means over machine types and
sections) and prints it beside the demo's systems: per seed, and mean +- std over seeds.

    python benchmarks/compare_extractor.py --demo-root exp/fidelity --seeds 0 1 2 \\
        --config hybrid_asd/configs/multibranch_demo.yaml --out-root exp/compare/multibranch_demo

``--jobs`` runs that many machine types at once (spawned processes, one thread each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybrid_asd.evaluation.metrics import evaluate_scores  # noqa: E402
from hybrid_asd.scores import ScoreTable  # noqa: E402

DEMO_SYSTEMS = ("AE baseline", "serial hybrid: kNN on sub-cluster AdaCos embeddings",
                "IM: Mahalanobis on log-mel statistics", "MobileNetV2-recipe OE baseline (small CNN)")


def demo_machines(demo_seed_dir: Path) -> list[str]:
    return sorted(p.name for p in (demo_seed_dir / "exp" / "demo_hybrid").iterdir() if p.is_dir())


def run_one(config: Path, exp: Path, data_root: Path, machine: str, seed: int) -> Path:
    """``hybrid-asd run`` for one machine type (one thread), unless its scores are there."""
    scores = exp / "scores"
    if scores.is_dir() and any(scores.glob("*.csv")):
        return exp
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hybrid_asd.cli", "--log-level", "WARNING", "run", "--exp", str(exp), "--config",
           str(config), "--data-root", str(data_root), "--machine", machine, "--seed", str(seed), "--no-progress"]
    log = exp.parent / f"{machine}.log"
    exp.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        if subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode:
            raise SystemExit(f"{' '.join(cmd)} failed; see {log}")
    return exp


def pooled_scores(exps: list[Path]) -> dict[str, dict]:
    """Official score and domain AUCs of each score table, pooled over machine types."""
    out = {}
    names = sorted({p.stem for e in exps for p in (e / "scores").glob("*.csv")})
    for name in names:
        tables = [ScoreTable.from_csv(e / "scores" / f"{name}.csv", name) for e in exps]
        res = evaluate_scores(ScoreTable.concat(tables, name))
        d = res.by_domain()
        out[name] = {"official_score": res.official_score, "source_auc": d["source"]["auc"],
                     "target_auc": d["target"]["auc"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo-root", type=Path, required=True, help="holds seed<k>/ demo runs (results.json, data/)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--config", type=Path, required=True, help="the config to judge")
    ap.add_argument("--out-root", type=Path, required=True, help="its runs: <out-root>/seed<k>/<machine>")
    ap.add_argument("--jobs", type=int, default=2, help="machine types run at once")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    per_seed: dict[int, dict[str, dict]] = {}
    for seed in args.seeds:
        demo = args.demo_root / f"seed{seed}"
        if not (demo / "results.json").is_file():
            ap.error(f"{demo / 'results.json'}: no finished demo run for seed {seed}")
        machines = demo_machines(demo)
        with ThreadPoolExecutor(args.jobs) as pool:  # each job is its own process
            exps = list(pool.map(lambda m: run_one(args.config, args.out_root / f"seed{seed}" / m, demo / "data", m,
                                                   seed), machines))
        ours = pooled_scores(exps)
        theirs = json.loads((demo / "results.json").read_text())
        per_seed[seed] = {**{f"{args.config.stem}/{k}": v for k, v in ours.items()},
                          **{k: {"official_score": theirs[k]["official_score"],
                                 "source_auc": theirs[k]["source"]["auc"], "target_auc": theirs[k]["target"]["auc"]}
                             for k in DEMO_SYSTEMS if k in theirs}}
    systems = list(per_seed[args.seeds[0]])
    print(f"| system | {' | '.join(f'seed {s}' for s in args.seeds)} | mean ± std official | source AUC | target AUC |")
    print("|---|" + "---|" * (len(args.seeds) + 3))
    for name in systems:
        vals = np.array([per_seed[s][name]["official_score"] for s in args.seeds])
        src = np.mean([per_seed[s][name]["source_auc"] for s in args.seeds])
        tgt = np.mean([per_seed[s][name]["target_auc"] for s in args.seeds])
        std = vals.std(ddof=1) if len(vals) > 1 else 0.0
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {vals.mean():.4f} ± {std:.4f} | "
              f"{src:.4f} | {tgt:.4f} |")
    if args.json:
        args.json.write_text(json.dumps(per_seed, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
