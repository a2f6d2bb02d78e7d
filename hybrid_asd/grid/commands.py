"""The ``hybrid-asd grid`` subcommand: flags (or a grid YAML) -> :func:`hybrid_asd.grid.runner.run_grid`.

Exit status: 0 when every cell is done, 1 when any cell failed (after its retries; the others ran
on), 2 for bad input (an unknown config or machine type, a bad grid key) before anything runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hybrid_asd.grid.runner import run_grid
from hybrid_asd.grid.spec import FusionSpec, load_grid

DESCRIPTION = ("Run approach configs x machine types x seeds, one Ray task per (approach, machine type, seed) "
               "cell, locally or on a Ray cluster; complete cells are skipped, failing ones retried; writes "
               "EXP_ROOT/grid/results.csv and summary.md (mean ± std over seeds, cross-approach fusion per seed).")
EPILOG = """examples:
  hybrid-asd grid --configs demo_baselines demo_hybrid --machines fan valve ToyCar --seeds 0 1 2 \\
      --data-root data/demo_seed{seed} --exp-root exp/grid_demo
  hybrid-asd grid recipes/dcase2021/grid.yaml --address auto --gpus-per-cell 1
A grid YAML has the same keys as the flags (data_root, cpus_per_cell, ...); a flag replaces the file's key.
{seed} in --data-root is replaced by each cell's seed. --set KEY=VALUE overrides every config,
--set CONFIG:KEY=VALUE one config. See docs/grid.md."""


def add_grid_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("grid", help="approach x machine type x seed grid on Ray, with mean ± std tables over seeds",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", type=Path, default=None, help="grid YAML (keys as the flags below)")
    p.add_argument("--configs", nargs="+", default=None, metavar="CONFIG",
                   help="approach configs: built-in names (e.g. demo_hybrid) or YAML paths")
    p.add_argument("--machines", nargs="+", default=None, metavar="MACHINE", help="machine types")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED", help="seeds (default 0)")
    p.add_argument("--data-root", default=None, help="data root; {seed} is replaced by the cell's seed")
    p.add_argument("--exp-root", default=None, help="experiment root (default exp); the grid writes EXP_ROOT/grid/")
    p.add_argument("--ground-truth", default=None, help="folder of ground_truth_*.csv (evaluation data labels)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT (default: a local Ray instance)")
    p.add_argument("--local-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--cpus-per-cell", type=float, default=None, help="CPUs per cell, also its threads (default 1)")
    p.add_argument("--gpus-per-cell", type=float, default=None, help="GPUs per cell (default 0)")
    p.add_argument("--max-retries", type=int, default=None, help="retries of a failing cell (default 2)")
    p.add_argument("--set", dest="overrides", action="append", default=None, metavar="[CONFIG:]KEY=VALUE",
                   help="override a config key of every config, or of CONFIG only (repeatable)")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="rerun cells whose folder holds a different config (stages whose inputs changed)")
    p.add_argument("--fuse-members", nargs="+", default=None, metavar="APPROACH[/TABLE]",
                   help="members of the per-seed tuned cross-approach fusion (default: every approach's fused "
                        "output)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the per-cell lines stay)")
    p.set_defaults(func=cmd_grid)
    return p


def grid_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The given flags as grid keys (None: not given, the file's or the default value applies)."""
    flags = {key: getattr(args, key) for key in ("configs", "machines", "seeds", "data_root", "exp_root",
                                                 "ground_truth", "address", "local_cpus", "cpus_per_cell",
                                                 "gpus_per_cell", "max_retries", "overwrite")}
    flags["set"] = args.overrides
    if args.fuse_members is not None:
        flags["fusions"] = [FusionSpec(members=args.fuse_members).to_dict()]
    return flags


def cmd_grid(args: argparse.Namespace) -> int:
    spec = load_grid(args.file, grid_flags(args))
    outcome = run_grid(spec, progress=not args.no_progress)
    return 1 if outcome.failed else 0


__all__ = ["add_grid_parser", "cmd_grid", "grid_flags"]
