"""The ``hybrid-asd`` command line: thin subcommands, each calling one library function."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from hybrid_asd import __version__
from hybrid_asd.errors import HybridASDError

log = logging.getLogger("hybrid_asd.cli")

Handler = Callable[[argparse.Namespace], int | None]


# --- shared option groups ---------------------------------------------------------------------
def add_exp(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exp", required=True, type=Path, help="experiment folder (e.g. exp/<recipe>/<machine>/seed0)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or auto (default: the config's, 'auto')")


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="approach YAML (default: built-in defaults)")
    p.add_argument("--data-root", type=Path, default=None, help="data root with <machine>/{train,...}/ folders")
    p.add_argument("--machine", default=None, help="machine type, e.g. fan")
    p.add_argument("--seed", type=int, default=None, help="seed for Python, NumPy and torch (default: config's, 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set extractor.epochs=1 (repeatable)")


# --- handlers ------------------------------------------------------------------------------------
def _experiment_and_config(args: argparse.Namespace):
    from hybrid_asd.experiment import Experiment
    from hybrid_asd.utils import resolve_device, seed_everything

    exp = Experiment(args.exp)
    config = exp.load_config()
    seed_everything(int(config.get("seed", 0)))
    device = resolve_device(getattr(args, "device", None) or config.get("device", "auto"))
    return exp, config, device


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False)


def cmd_manifest(args: argparse.Namespace) -> int:
    from hybrid_asd.data.clips import write_clip_list
    from hybrid_asd.data.manifest import scan

    manifest = scan(args.root, machines=args.machine or None, ground_truth=args.ground_truth)
    print(manifest.summary())
    if args.out:
        write_clip_list(args.out, manifest.clips)
        print(f"wrote {len(manifest.clips)} clips to {args.out}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from hybrid_asd.data.synthetic import generate

    summary = generate(args.out, preset=args.preset, seed=args.seed if args.seed is not None else 0,
                       machines=args.machines or None, overwrite=args.overwrite,
                       progress=_progress(args), workers=args.workers)
    print(summary)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from hybrid_asd.experiment import Experiment
    from hybrid_asd.pipeline import make_config, prepare

    config = make_config(args.config, args.overrides, data_root=args.data_root, machine=args.machine,
                         seed=args.seed, device=args.device)
    train, test = prepare(Experiment(args.exp), config, overwrite=args.overwrite)
    print(f"{args.exp}: {len(train)} train and {len(test)} test clips of {config['data']['machine']}")
    return 0


def _stage(fn_name: str, marker: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        from hybrid_asd import pipeline

        exp, config, device = _experiment_and_config(args)
        if args.force:
            exp.clear_stage(marker)
        elif exp.stage_done(marker, config):
            print(f"{exp.root}: stage '{marker}' already complete (use --force to rerun)")
            return 0
        fn = getattr(pipeline, fn_name)
        kwargs: dict[str, Any] = {"progress": _progress(args)}
        if fn_name in ("run_train", "run_extract", "run_fit", "run_score"):
            kwargs["device"] = device
        fn(exp, config, **kwargs)
        return 0

    return handler


def cmd_run(args: argparse.Namespace) -> int:
    from hybrid_asd.experiment import Experiment
    from hybrid_asd.pipeline import make_config, run_stages

    config = make_config(args.config, args.overrides, data_root=args.data_root, machine=args.machine,
                         seed=args.seed, device=args.device)
    results = run_stages(Experiment(args.exp), config, stage=args.stage, stop_stage=args.stop_stage,
                         overwrite=args.overwrite, progress=_progress(args))
    for name, res in (results or {}).items():
        print(f"== {name}\n{res.format()}")
    return 0


def cmd_fuse(args: argparse.Namespace) -> int:
    from hybrid_asd.ensemble.stage import run_fuse
    from hybrid_asd.pipeline import collect_score_tables, load_weights

    paths = collect_score_tables(args.scores, args.detectors)
    rule, weights = load_weights(args.weights, args.rule)
    result = run_fuse(paths, args.out, rule=rule, weights=weights, normalise=args.normalise,
                      per_domain=args.per_domain, tune=args.tune, protocol=args.protocol,
                      thresholds_quantile=args.threshold_quantile, method=args.tune_method,
                      grid_step=args.grid_step, per_machine=args.per_machine, loso=not args.no_loso,
                      seed=args.seed)
    if result.get("report"):
        print(result["report"])
    print(f"fused scores written to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from hybrid_asd.evaluation.official import evaluate_folder

    clips = None
    if args.data_root is not None:
        from hybrid_asd.data.manifest import scan

        clips = [c for c in scan(args.data_root, machines=args.machine or None).clips if c.split == "test"]
    if args.ground_truth is None and clips is None:
        raise HybridASDError("evaluate needs --ground-truth DIR or --data-root ROOT for the labels")
    results = evaluate_folder(args.scores, ground_truth=args.ground_truth, clips=clips,
                              protocol=args.protocol, out_csv=args.out, machines=args.machine or None)
    print(results.format())
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from hybrid_asd.detectors.stage import run_adapt

    exp, config, device = _experiment_and_config(args)
    run_adapt(exp, config, args.clips, device=device, progress=_progress(args))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hybrid_asd.demo import run_demo

    run_demo(args.out, seed=args.seed if args.seed is not None else 0, preset=args.preset,
             device=args.device or "auto", progress=_progress(args), quick=args.quick)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from hybrid_asd.data.download import download

    paths = download(args.dest, dataset=args.dataset, parts=args.parts, machines=args.machines or None,
                     base_url=args.base_url, progress=_progress(args))
    print(f"{len(paths)} archive(s) complete under {args.dest}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from hybrid_asd.checkpoints import publish

    out = publish(args.exp, args.name, dest=args.dest, command=args.command or "", overwrite=args.overwrite)
    print(f"published {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hybrid_asd.evaluation.report import write_reports

    for path in write_reports(args.exps, detectors=args.detectors, overlay=not args.no_overlay,
                              embedding=args.embedding):
        print(f"report: {path}")
    return 0


# --- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybrid-asd",
        description="Anomalous sound detection under domain shift: OE + inlier-model hybrids (DCASE 2021 Task 2).",
    )
    parser.add_argument("--version", action="version", version=f"hybrid-asd {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default INFO)")
    parser.add_argument("--log-file", type=Path, default=None, help="also write the log to this file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("manifest", help="scan a data root and print its machine types, sections and counts")
    p.add_argument("root", type=Path, help="data root holding <machine>/<split>/*.wav")
    p.add_argument("--machine", action="append", help="only this machine type (repeatable)")
    p.add_argument("--ground-truth", type=Path, default=None, help="folder of ground_truth_*.csv for unlabelled names")
    p.add_argument("--out", type=Path, default=None, help="write the clip list as CSV")
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("synth", help="generate the built-in synthetic data set (DCASE 2021 layout)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--preset", default="demo", help="tiny | demo | full (default demo)")
    p.add_argument("--seed", type=int, default=None, help="seed (default 0); same seed, same bytes")
    p.add_argument("--machines", nargs="+", default=None, help="machine types (default: the preset's)")
    p.add_argument("--workers", type=int, default=1, help="processes for generation (default 1)")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty output folder")
    add_progress(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("prepare", help="stage 1: resolve the config and list the machine type's clips into --exp")
    add_exp(p)
    add_config_options(p)
    add_device(p)
    p.add_argument("--overwrite", action="store_true", help="replace a different saved config")
    p.set_defaults(func=cmd_prepare)

    stage_help = {
        "features": ("run_features", "features", "stage 2: compute and cache log-mel features of every clip"),
        "train": ("run_train", "train", "stage 3: train the section-identification feature extractor"),
        "extract": ("run_extract", "extract", "stage 4: write embeddings and OE scores of every clip"),
        "fit": ("run_fit", "fit", "stage 5: fit the inlier-model detectors per section and domain"),
        "score": ("run_score", "score", "stage 6: score test clips; write score tables and official files"),
        "fuse-exp": ("run_experiment_fuse", "fuse", "stage 7: fuse the experiment's detectors with its ensemble config"),
        "eval-exp": ("run_experiment_evaluate", "evaluate", "stage 8: evaluate every score table of the experiment"),
    }
    for name, (fn_name, marker, help_text) in stage_help.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_exp(p)
        if fn_name in ("run_train", "run_extract", "run_fit", "run_score"):
            add_device(p)
        add_progress(p)
        p.add_argument("--force", action="store_true", help="rerun even if the stage already completed")
        p.set_defaults(func=_stage(fn_name, marker))

    p = sub.add_parser("run", help="run stages prepare..evaluate for one machine type (--stage/--stop-stage)")
    add_exp(p)
    add_config_options(p)
    add_device(p)
    add_progress(p)
    p.add_argument("--stage", default="prepare", help="first stage to run (default prepare)")
    p.add_argument("--stop-stage", default="evaluate", help="last stage to run (default evaluate)")
    p.add_argument("--overwrite", action="store_true", help="replace a different saved config")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("fuse", help="z-normalise and fuse score tables of one or more experiments; --tune weights")
    p.add_argument("--scores", nargs="+", type=Path, required=True,
                   help="experiment folders (their scores/*.csv) or score-table CSV files")
    p.add_argument("--detectors", nargs="+", default=None, help="detector ids to fuse (default: all found)")
    p.add_argument("--out", type=Path, required=True, help="output folder for fused.csv, weights.yaml, submission/")
    p.add_argument("--rule", default=None, help="weighted_sum | max | min | rank_mean (default weighted_sum)")
    p.add_argument("--weights", type=Path, default=None, help="YAML with ensemble: {rule, weights} (e.g. from --tune)")
    p.add_argument("--normalise", default="znorm", help="znorm | none (default znorm)")
    p.add_argument("--per-domain", action="store_true", help="z-normalisation statistics per domain too")
    p.add_argument("--tune", action="store_true", help="search the weights that maximise the official score")
    p.add_argument("--protocol", default="dcase2021", help="dcase2021 | dcase2022")
    p.add_argument("--threshold-quantile", type=float, default=0.9, help="decision threshold quantile")
    p.add_argument("--tune-method", default="auto", help="auto (grid up to 4 detectors) | grid | optimiser")
    p.add_argument("--grid-step", type=float, default=0.1, help="simplex grid step for --tune (default 0.1)")
    p.add_argument("--per-machine", action="store_true", help="tune one weight set per machine type")
    p.add_argument("--no-loso", action="store_true", help="skip leave-one-section-out estimates")
    p.add_argument("--seed", type=int, default=0, help="seed of the optimiser (default 0)")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("evaluate", help="official AUC/pAUC table of a folder of official score files")
    p.add_argument("--scores", nargs="+", type=Path, required=True, help="folder(s) of anomaly_score_*.csv files")
    p.add_argument("--ground-truth", type=Path, default=None, help="folder of ground_truth_*.csv")
    p.add_argument("--data-root", type=Path, default=None, help="labelled data root (instead of --ground-truth)")
    p.add_argument("--machine", action="append", help="only this machine type from --data-root (repeatable)")
    p.add_argument("--protocol", default="dcase2021", help="dcase2021 | dcase2022 (default dcase2021)")
    p.add_argument("--out", type=Path, default=None, help="write the result table CSV here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("adapt", help="add new target-domain normal clips to a fitted experiment and refit")
    add_exp(p)
    p.add_argument("clips", nargs="+", type=Path, help="WAV files or folders of new target-domain normal clips")
    add_device(p)
    add_progress(p)
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser("demo", help="generate the demo data, run baselines and hybrids end to end, print the table")
    p.add_argument("--out", type=Path, default=Path("exp/demo"), help="output folder (default exp/demo)")
    p.add_argument("--preset", default="demo", help="synthetic preset (default demo; tiny for a smoke test)")
    p.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    p.add_argument("--quick", action="store_true", help="tiny models and one epoch (smoke test)")
    add_device(p)
    add_progress(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("download", help="download DCASE 2021 Task 2 data from Zenodo (resumable, checksummed)")
    p.add_argument("--dest", type=Path, required=True, help="destination folder")
    p.add_argument("--dataset", default="dcase2021", help="data set (default dcase2021)")
    p.add_argument("--parts", nargs="+", default=["dev", "additional", "eval", "ground_truth"],
                   help="dev additional eval ground_truth (default all)")
    p.add_argument("--machines", nargs="+", default=None, help="machine types (default all)")
    p.add_argument("--base-url", default="https://zenodo.org", help="Zenodo base address (default https://zenodo.org)")
    add_progress(p)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("publish", help="copy a trained extractor into checkpoints/<name> with a model card")
    add_exp(p)
    p.add_argument("--name", required=True, help="checkpoint name (folder under --dest)")
    p.add_argument("--dest", type=Path, default=Path("checkpoints"), help="destination (default checkpoints/)")
    p.add_argument("--command", default=None, help="the command that produced it, for the model card")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint of that name")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("report", help="write report/ (figures and report.html) for experiment folders")
    p.add_argument("exps", nargs="+", type=Path, help="experiment folders")
    p.add_argument("--detectors", nargs="+", default=None, help="detector ids to show (default: all / fused)")
    p.add_argument("--embedding", default="pca", help="embedding map: pca | tsne | umap (default pca)")
    p.add_argument("--no-overlay", action="store_true", help="do not overlay several experiments")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import os

    # OpenMP's default busy-waiting makes 2-thread CPU training collapse (41 -> 3 patches/s measured)
    # whenever other processes share the cores; passive waiting costs little otherwise. It must be set
    # before torch loads its OpenMP runtime, i.e. here; a value set by the user wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from hybrid_asd.utils import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_file)
    try:
        return int(args.func(args) or 0)
    except HybridASDError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; completed outputs are kept (writes are atomic)")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
