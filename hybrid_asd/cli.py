"""The ``hybrid-asd`` command line: thin subcommands, each calling one library function.

The stage subcommands (``prepare`` .. ``evaluate``) come from the stage table
(:mod:`hybrid_asd.stages`); ``fuse`` and ``evaluate`` also work outside an experiment folder
(``--scores``). Every enumerated option uses ``choices`` taken from the registries and settings
that define them; defaults not given on the command line are the typed settings' own.

Handlers import the library modules that load torch, scikit-learn, scipy or matplotlib when they
run (each says so), so ``--help`` and light commands start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from hybrid_asd import __version__
from hybrid_asd.config import DEVICE_PATTERN, DEVICES_HELP, config_schema
from hybrid_asd.data.channels import CHANNEL_MODES
from hybrid_asd.data.clips import write_clip_list
from hybrid_asd.data.download import download
from hybrid_asd.data.download_catalogue import ALL_PARTS, DATASETS, DEFAULT_BASE_URL, YEARS, catalogue_help
from hybrid_asd.data.inventory import format_inventory, inventory
from hybrid_asd.data.manifest import AudioExpectations, scan
from hybrid_asd.ensemble.fusion import NORMALISERS, RULES
from hybrid_asd.ensemble.settings import TUNE_METHODS, EnsembleSettings, TuneSettings
from hybrid_asd.errors import HybridASDError
from hybrid_asd.evaluation.settings import EMBEDDING_METHODS, PROTOCOLS, EvaluationSettings
from hybrid_asd.experiment import Experiment, GridFiles
from hybrid_asd.grid.commands import add_grid_parser
from hybrid_asd.monitor.commands import add_monitor_parsers
from hybrid_asd.pipeline import check_data, make_config, run_stage, run_stages
from hybrid_asd.stages import STAGE_NAMES, STAGES, Stage, format_table, stage_name
from hybrid_asd.utils import resolve_device, seed_everything, setup_logging

log = logging.getLogger("hybrid_asd.cli")

Handler = Callable[[argparse.Namespace], int | None]
SYNTH_PRESETS = ("tiny", "demo", "full")  # hybrid_asd.data.synthetic.PRESETS (a test keeps them equal)
ENSEMBLE, EVALUATION, TUNE = EnsembleSettings(), EvaluationSettings(), TuneSettings()


# --- shared option groups ---------------------------------------------------------------------
def device_arg(text: str) -> str:
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {DEVICES_HELP}")
    return text


def add_exp(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--exp", required=required, type=Path, help="experiment folder (e.g. exp/<recipe>/<machine>/seed0)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=device_arg, default=None,
                   help=f"{DEVICES_HELP} (default: the config's, 'auto')")


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None,
                   help="approach YAML (default: the experiment's saved config.yaml, else built-in defaults)")
    p.add_argument("--data-root", type=Path, default=None, help="data root with <machine>/{train,...}/ folders")
    p.add_argument("--machine", default=None, help="machine type, e.g. fan")
    p.add_argument("--seed", type=int, default=None, help="seed for Python, NumPy and torch (default: config's, 0)")
    add_mimii_test_normals(p)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set extractor.epochs=1 (repeatable)")


def channel_arg(text: str) -> int | str:
    """``--channel``: an index, ``mean`` or ``all`` (as ``data.channel``)."""
    if text in CHANNEL_MODES:
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"expected a channel index or one of {', '.join(CHANNEL_MODES)}, got {text!r}")


def add_mimii_test_normals(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mimii-test-normals", type=int, default=None, metavar="N",
                   help="MIMII only: normal test clips per id (default: as many as its abnormal clips, the MIMII "
                        "baseline's split); config data.mimii_test_normals")


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False)


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among ``names`` that were given (not None): library defaults apply to the rest."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


# --- stage subcommands ---------------------------------------------------------------------------
def run_stage_command(stage: Stage, args: argparse.Namespace) -> int:
    """One stage on an existing experiment folder; skipped when complete unless --force."""
    exp = Experiment(args.exp)
    config = exp.load_config()
    if not args.force and exp.stage_done(stage.name, config):
        print(f"{exp.root}: stage '{stage.name}' already complete (use --force to rerun)")
        return 0
    seed_everything(config.seed)
    result = run_stage(exp, config, stage, device=getattr(args, "device", None), progress=_progress(args),
                       force=True)
    if stage.name == "evaluate":
        print_results(result)
    return 0


def stage_handler(stage: Stage) -> Handler:
    return lambda args: run_stage_command(stage, args)


def cmd_prepare(args: argparse.Namespace) -> int:
    config = make_config(args.config, args.overrides, data_root=args.data_root, machine=args.machine,
                         seed=args.seed, device=args.device, mimii_test_normals=args.mimii_test_normals)
    exp = Experiment(args.exp)
    check_data(config)  # before the config is saved: fixing a wrong data root needs no --overwrite
    exp.init(config, overwrite=args.overwrite)
    train, test = run_stage(exp, config, "prepare", force=True)
    print(f"{args.exp}: {len(train)} train and {len(test)} test clips of {config.data.machine}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    exp = Experiment(args.exp)
    # Without --config an existing experiment continues with its own saved config (e.g. --stage fuse).
    base = args.config if args.config is not None or not exp.config_path.is_file() else exp.config_path
    config = make_config(base, args.overrides, data_root=args.data_root, machine=args.machine,
                         seed=args.seed, device=args.device, mimii_test_normals=args.mimii_test_normals)
    results = run_stages(exp, config, stage=args.stage, stop_stage=args.stop_stage,
                         overwrite=args.overwrite, progress=_progress(args))
    if args.stop_stage == "evaluate":
        print_results(results)
    return 0


def print_results(results: dict[str, Any] | None) -> None:
    for name, res in (results or {}).items():
        print(f"== {name}\n{res.format()}")


def cmd_stages(args: argparse.Namespace) -> int:
    if args.names:
        for stage in STAGES:
            print(stage.number, stage.name)
    else:
        print(format_table())
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    text = json.dumps(config_schema(), indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


# --- fuse / evaluate: one experiment's stage, or score tables from anywhere -------------------------
FUSE_SCORE_OPTIONS = ("scores", "detectors", "out", "rule", "weights", "normalise", "per_domain", "tune", "protocol",
                      "threshold_quantile", "max_fpr", "tune_method", "grid_step", "per_machine", "no_loso", "seed")
EVALUATE_SCORE_OPTIONS = ("scores", "ground_truth", "data_root", "machine", "protocol", "max_fpr", "out")
STAGE_ONLY_OPTIONS = ("force",)


def check_mode(args: argparse.Namespace, parser: argparse.ArgumentParser, folder_options: Sequence[str]) -> None:
    """``--exp`` (the stage) and ``--scores`` (free-standing) take different options."""
    def given(name: str) -> bool:
        value = getattr(args, name)
        return value not in (None, False, [])

    if args.exp is not None:
        wrong = [n for n in folder_options if given(n)]
        if wrong:
            parser.error(f"with --exp (the stage) the options {', '.join('--' + n.replace('_', '-') for n in wrong)} "
                         "do not apply; they go with --scores")
    else:
        wrong = [n for n in STAGE_ONLY_OPTIONS if given(n)]
        if wrong:
            parser.error("--force applies to the stage (--exp) only")


def cmd_fuse(args: argparse.Namespace) -> int:
    if args.exp is not None:
        return run_stage_command(STAGE_BY_NAME["fuse"], args)
    # Lazy: fusing and tuning load scikit-learn and scipy (seconds); --help must not.
    from hybrid_asd.ensemble.stage import collect_score_tables, load_weights, run_fuse

    if args.out is None:
        raise HybridASDError("fuse --scores needs --out DIR")
    paths, names = collect_score_tables(args.scores, args.detectors)
    rule, weights = load_weights(args.weights, args.rule)
    options = _given(args, "normalise", "protocol", "max_fpr", "seed", "grid_step")
    if args.threshold_quantile is not None:
        options["thresholds_quantile"] = args.threshold_quantile
    if args.tune_method is not None:
        options["method"] = args.tune_method
    result = run_fuse(paths, args.out, rule=rule, weights=weights, per_domain=args.per_domain, tune=args.tune,
                      per_machine=args.per_machine, loso=not args.no_loso, names=names, **options)
    if result.get("report"):
        print(result["report"])
    print(f"fused scores written to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.exp is not None:
        return run_stage_command(STAGE_BY_NAME["evaluate"], args)
    # Lazy: the evaluator loads scikit-learn (seconds); --help must not.
    from hybrid_asd.evaluation.official import evaluate_folder

    clips = None
    if args.data_root is not None:
        clips = [c for c in scan(args.data_root, machines=args.machine or None).clips if c.split == "test"]
    if args.ground_truth is None and clips is None:
        raise HybridASDError("evaluate --scores needs --ground-truth DIR or --data-root ROOT for the labels")
    results = evaluate_folder(args.scores, ground_truth=args.ground_truth, clips=clips, out_csv=args.out,
                              machines=args.machine or None, **_given(args, "protocol", "max_fpr"))
    print(results.format())
    if args.out:
        print(f"wrote {args.out}")
    return 0


# --- other commands ------------------------------------------------------------------------------
def cmd_manifest(args: argparse.Namespace) -> int:
    audio = AudioExpectations(**_given(args, "sample_rate", "channel"))
    manifest = scan(args.root, machines=args.machine or None, ground_truth=args.ground_truth,
                    mimii_test_normals=args.mimii_test_normals, check_audio=args.check_audio, audio=audio)
    print(manifest.summary())
    # machine types, sections, domains, attributes, supplemental clips and channel counts
    print(format_inventory(inventory(manifest.clips, channels=not args.no_channels), channel=args.channel))
    if args.out:
        write_clip_list(args.out, manifest.clips)
        print(f"wrote {len(manifest.clips)} clips to {args.out}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from hybrid_asd.data.synthetic import generate  # lazy: the generator loads scipy.signal (a second)

    summary = generate(args.out, preset=args.preset, machines=args.machines or None, overwrite=args.overwrite,
                       progress=_progress(args), workers=args.workers, **_given(args, "seed", "channels", "sections"))
    print(summary)
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from hybrid_asd.detectors.stage import run_adapt  # lazy: loads torch (seconds)

    exp = Experiment(args.exp)
    config = exp.load_config()
    seed_everything(config.seed)
    run_adapt(exp, config, args.clips, device=resolve_device(args.device or config.device), progress=_progress(args))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hybrid_asd.demo import run_demo  # lazy: loads torch, scikit-learn and matplotlib (seconds)

    run_demo(args.out, preset=args.preset, progress=_progress(args), quick=args.quick, jobs=args.jobs,
             **_given(args, "seed", "device"))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    dataset = YEARS[args.year] if args.year is not None else (args.dataset or "dcase2021")
    parts = args.parts or DATASETS[dataset].parts  # default: every part the data set has
    paths = download(args.dest, dataset=dataset, parts=parts, machines=args.machines or None,
                     base_url=args.base_url, progress=_progress(args))
    print(f"{len(paths)} archive(s) complete under {args.dest}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from hybrid_asd.checkpoints import publish  # lazy: loads torch (seconds)

    out = publish(args.exp, args.name, dest=args.dest, command=args.command or "", overwrite=args.overwrite,
                  reference_clips=args.reference_clips)
    print(f"published {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    grids = [p for p in args.exps if GridFiles.in_folder(p).summary_json.is_file()]  # hybrid-asd grid folders
    if grids:
        from hybrid_asd.grid.plot import plot_grid  # lazy: loads matplotlib (a second)

        for path in grids:
            print(f"report: {plot_grid(path)}")
    series = [p for p in args.exps if p.is_file()]  # predict --window outputs; folders are experiments
    if series:
        from hybrid_asd.monitor.plot import plot_series  # lazy: loads matplotlib (a second)

        for path in series:
            print(f"report: {plot_series(path)}")
    folders = [p for p in args.exps if not p.is_file() and p not in grids]
    if folders:
        from hybrid_asd.evaluation.report import write_reports  # lazy: loads matplotlib and scikit-learn (seconds)

        for path in write_reports(folders, detectors=args.detectors, overlay=not args.no_overlay,
                                  embedding=args.embedding):
            print(f"report: {path}")
    return 0


# --- parser --------------------------------------------------------------------------------------
STAGE_BY_NAME = {stage.name: stage for stage in STAGES}


FREE_STANDING_HELP = {
    "fuse": "; with --scores: fuse score tables of several experiments, --tune the weights",
    "evaluate": "; with --scores: the official table of folders of official score files",
}


def stage_help(stage: Stage) -> str:
    return f"stage {stage.number}: {stage.help}{FREE_STANDING_HELP.get(stage.name, '')}"


def add_stage_parser(sub: argparse._SubParsersAction, stage: Stage) -> argparse.ArgumentParser:
    p = sub.add_parser(stage.name, aliases=list(stage.aliases), help=stage_help(stage), description=stage_help(stage))
    add_exp(p, required=stage.name not in ("fuse", "evaluate"))
    if stage.takes_device:
        add_device(p)
    add_progress(p)
    p.add_argument("--force", action="store_true", help="rerun even if the stage already completed")
    p.set_defaults(func=stage_handler(stage))
    return p


def add_fuse_options(p: argparse.ArgumentParser) -> None:
    p.epilog = ("With --exp: stage 7 on one experiment folder (its config's ensemble section). With --scores: "
                "fuse score tables of one or more experiments into --out, optionally tuning the weights.")
    p.add_argument("--scores", nargs="+", type=Path, default=None,
                   help="experiment folders (their scores/*.csv) or score-table CSV files")
    p.add_argument("--detectors", nargs="+", default=None,
                   help="members to fuse (default: all found): ids (knn), or <approach>/<id> (lopez2021_parallel/oe) "
                        "where one id comes from experiments of several approaches")
    p.add_argument("--out", type=Path, default=None, help="output folder for fused.csv, weights.yaml, submission/")
    p.add_argument("--rule", choices=RULES.names(), default=None,
                   help=f"fusion rule (default: the --weights file's, else {ENSEMBLE.rule})")
    p.add_argument("--weights", type=Path, default=None, help="YAML with ensemble: {rule, weights} (e.g. from --tune)")
    p.add_argument("--normalise", choices=NORMALISERS, default=None,
                   help=f"score normalisation before fusing (default {ENSEMBLE.normalise})")
    p.add_argument("--per-domain", action="store_true", help="z-normalisation statistics per domain too")
    p.add_argument("--tune", action="store_true", help="search the weights that maximise the official score")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help=f"evaluation protocol of the reported and tuned score (default {EVALUATION.protocol})")
    p.add_argument("--threshold-quantile", type=float, default=None,
                   help=f"decision threshold quantile (default {EVALUATION.threshold_quantile})")
    p.add_argument("--max-fpr", type=float, default=None, help=f"pAUC max FPR (default {EVALUATION.max_fpr})")
    p.add_argument("--tune-method", choices=TUNE_METHODS, default=None,
                   help=f"weight search (default {TUNE.method}: grid up to 4 detectors, else optimiser)")
    p.add_argument("--grid-step", type=float, default=None,
                   help=f"simplex grid step for --tune (default {TUNE.grid_step})")
    p.add_argument("--per-machine", action="store_true", help="tune one weight set per machine type")
    p.add_argument("--no-loso", action="store_true", help="skip leave-one-section-out estimates")
    p.add_argument("--seed", type=int, default=None, help="seed of the optimiser (default 0)")


def add_evaluate_options(p: argparse.ArgumentParser) -> None:
    p.epilog = ("With --exp: stage 8 on one experiment folder. With --scores: the official table of folders of "
                "official anomaly_score_*.csv files, labels from --ground-truth or --data-root.")
    p.add_argument("--scores", nargs="+", type=Path, default=None, help="folder(s) of anomaly_score_*.csv files")
    p.add_argument("--ground-truth", type=Path, default=None, help="folder of ground_truth_*.csv")
    p.add_argument("--data-root", type=Path, default=None, help="labelled data root (instead of --ground-truth)")
    p.add_argument("--machine", action="append", help="only this machine type from --data-root (repeatable)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help=f"evaluation protocol (default {EVALUATION.protocol})")
    p.add_argument("--max-fpr", type=float, default=None, help=f"pAUC max FPR (default {EVALUATION.max_fpr})")
    p.add_argument("--out", type=Path, default=None, help="write the result table CSV here")


class Parser(argparse.ArgumentParser):
    """Checks that need several options at once (``fuse``/``evaluate``: --exp or --scores)."""

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        checked = getattr(parsed, "mode_check", None)
        if checked is not None:
            sub, folder_options = checked
            if (parsed.exp is None) == (parsed.scores is None):
                sub.error("give either --exp EXP (the stage) or --scores ... (score tables from anywhere)")
            check_mode(parsed, sub, folder_options)
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hybrid-asd",
        description="Anomalous sound detection under domain shift: OE + inlier-model hybrids (DCASE 2021 Task 2).",
    )
    parser.add_argument("--version", action="version", version=f"hybrid-asd {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default INFO)")
    parser.add_argument("--log-file", type=Path, default=None, help="also write the log to this file")
    parser.add_argument("--debug", action="store_true",
                        help="debug logging (other libraries' too) and the traceback of any error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("manifest", help="scan a data root and print its machine types, sections and counts")
    p.add_argument("root", type=Path, help="data root holding <machine>/<split>/*.wav")
    p.add_argument("--machine", action="append", help="only this machine type (repeatable)")
    p.add_argument("--ground-truth", type=Path, default=None, help="folder of ground_truth_*.csv for unlabelled names")
    p.add_argument("--out", type=Path, default=None, help="write the clip list as CSV")
    add_mimii_test_normals(p)
    p.add_argument("--check-audio", action="store_true",
                   help="read every header: report corrupt, empty, truncated and too-short files, and files at "
                        "another sample rate or with several channels")
    p.add_argument("--sample-rate", type=int, default=None, help="expected sample rate for --check-audio (default "
                                                                 "16000)")
    p.add_argument("--channel", type=channel_arg, default=0, metavar="N|mean|all",
                   help="data.channel of multi-channel files, to name in the listing and in --check-audio's notes "
                        "(default 0: DCASE 2026's near microphone, the official baseline's choice)")
    p.add_argument("--no-channels", action="store_true", help="do not read the headers for channel counts")
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("synth", help="generate the built-in synthetic data set (DCASE 2021 layout)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--preset", choices=SYNTH_PRESETS, default="demo", help="data set size (default demo)")
    p.add_argument("--seed", type=int, default=None, help="seed (default 0); same seed, same bytes")
    p.add_argument("--machines", nargs="+", default=None, help="machine types (default: the preset's)")
    p.add_argument("--workers", type=int, default=1, help="processes for generation (default 1)")
    p.add_argument("--sections", type=int, default=None, metavar="N",
                   help="sections 00..N-1 per machine type (default: the preset's; e.g. 6 with --preset demo for "
                        "DCASE 2021's six sections at demo sizes); a section's clips do not depend on N")
    p.add_argument("--channels", type=int, choices=(1, 2), default=None,
                   help="1 (default): one microphone per clip, named in the mic attribute; "
                        "2: stereo clips, near microphone left and far right (as DCASE 2026)")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty output folder")
    add_progress(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("stages", help="list the pipeline stages: number, name, config sections they read")
    p.add_argument("--names", action="store_true", help="one 'NUMBER NAME' line per stage (for scripts)")
    p.set_defaults(func=cmd_stages)

    p = sub.add_parser("schema", help="print the JSON Schema of approach configs (for editors and validators)")
    p.add_argument("--out", type=Path, default=None, help="write it to this file instead")
    p.set_defaults(func=cmd_schema)

    for stage in STAGES:
        if stage.name == "prepare":
            help_text = stage_help(stage)
            p = sub.add_parser("prepare", help=help_text, description=help_text)
            add_exp(p)
            add_config_options(p)
            add_device(p)
            p.add_argument("--overwrite", action="store_true", help="replace a different saved config")
            p.set_defaults(func=cmd_prepare)
            continue
        p = add_stage_parser(sub, stage)
        if stage.name == "fuse":
            add_fuse_options(p)
            p.set_defaults(func=cmd_fuse, mode_check=(p, FUSE_SCORE_OPTIONS[1:]))
        elif stage.name == "evaluate":
            add_evaluate_options(p)
            p.set_defaults(func=cmd_evaluate, mode_check=(p, EVALUATE_SCORE_OPTIONS[1:]))

    p = sub.add_parser("run", help="run stages prepare..evaluate for one machine type (--stage/--stop-stage)")
    add_exp(p)
    add_config_options(p)
    add_device(p)
    add_progress(p)
    p.add_argument("--stage", type=stage_name, choices=STAGE_NAMES, default=STAGE_NAMES[0], metavar="STAGE",
                   help=f"first stage, by name or number: {', '.join(STAGE_NAMES)} (default {STAGE_NAMES[0]})")
    p.add_argument("--stop-stage", type=stage_name, choices=STAGE_NAMES, default=STAGE_NAMES[-1], metavar="STAGE",
                   help=f"last stage, by name or number (default {STAGE_NAMES[-1]})")
    p.add_argument("--overwrite", action="store_true", help="replace a different saved config")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("adapt", help="add new target-domain normal clips to a fitted experiment and refit")
    add_exp(p)
    p.add_argument("clips", nargs="+", type=Path, help="WAV files or folders of new target-domain normal clips")
    add_device(p)
    add_progress(p)
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser("demo", help="generate the demo data, run baselines and hybrids end to end, print the table")
    p.add_argument("--out", type=Path, default=Path("exp/demo"), help="output folder (default exp/demo)")
    p.add_argument("--preset", choices=SYNTH_PRESETS, default="demo",
                   help="synthetic preset (default demo; tiny for a smoke test)")
    p.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    p.add_argument("--quick", action="store_true", help="tiny models and one epoch (smoke test)")
    p.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="experiments run at once in worker processes (default: min(CPU cores, experiments), "
                        "6 for the demo preset; 1: one after the other); each uses one thread, so the table "
                        "does not depend on N")
    add_device(p)
    add_progress(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("download", help="download DCASE Task 2 data from Zenodo (resumable, checksummed)",
                       description="Download DCASE Task 2 data from Zenodo (resumable, checksummed).",
                       epilog="data sets (--dataset, or --year 2020..2026), their parts and machine types:\n"
                              + catalogue_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", type=Path, required=True, help="destination folder")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--dataset", choices=sorted(DATASETS), default=None,
                       help=f"data set: {', '.join(sorted(DATASETS))} (default dcase2021)")
    which.add_argument("--year", type=int, choices=sorted(YEARS), default=None,
                       help="the data set of this challenge year (--year 2026 = --dataset dcase2026)")
    p.add_argument("--parts", nargs="+", choices=ALL_PARTS, default=None,
                   help=f"parts to fetch, of {' '.join(ALL_PARTS)} (default: every part the data set has; "
                        "ground_truth exists for dcase2021 only)")
    p.add_argument("--machines", nargs="+", default=None,
                   help="machine types (default all; the data sets' types are listed below)")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"Zenodo base address (default {DEFAULT_BASE_URL})")
    add_progress(p)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("publish", help="copy a trained extractor into checkpoints/<name> with a model card")
    add_exp(p)
    p.add_argument("--name", required=True, help="checkpoint name (folder under --dest)")
    p.add_argument("--dest", type=Path, default=Path("checkpoints"), help="destination (default checkpoints/)")
    p.add_argument("--command", default=None, help="the command that produced it, for the model card")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint of that name")
    p.add_argument("--reference-clips", type=Path, default=None,
                   help="data root of real clips (e.g. ../shared/data/dcase2023t2-samples/dev_data/raw): the "
                        "checkpoint's scores of its sections' clips go into reference_scores.csv and the card")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("report", help="write report/ (figures and report.html) for experiment folders; plot "
                                      "predict --window outputs (score over time) and grid folders (means ± std)")
    p.add_argument("exps", nargs="+", type=Path,
                   help="experiment folders, or predict --window outputs (.csv/.jsonl; plotted beside them as .png), "
                        "or grid folders (EXP_ROOT/grid: approaches.png)")
    p.add_argument("--detectors", nargs="+", default=None, help="detector ids to show (default: all / fused)")
    p.add_argument("--embedding", choices=EMBEDDING_METHODS, default="pca", help="embedding map (default pca)")
    p.add_argument("--no-overlay", action="store_true", help="do not overlay several experiments")
    p.set_defaults(func=cmd_report)

    add_monitor_parsers(sub, add_device, add_progress)  # predict, export
    add_grid_parser(sub)  # grid
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # OpenMP's default busy-waiting makes 2-thread CPU training collapse (41 -> 3 patches/s measured)
    # whenever other processes share the cores; passive waiting costs little otherwise. It must be set
    # before torch loads its OpenMP runtime, i.e. here; a value set by the user wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    setup_logging("DEBUG" if args.debug else args.log_level, args.log_file)
    try:
        return int(args.func(args) or 0)
    except HybridASDError as exc:
        return report_error(args, exc, str(exc) or type(exc).__name__)
    except OSError as exc:  # a file that cannot be read or written: name it
        where = f"{exc.filename}: " if exc.filename else ""
        return report_error(args, exc, f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        log.error("interrupted; completed outputs are kept (writes are atomic)")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug, not bad input: one line, the traceback with --debug
        return report_error(args, exc, f"unexpected error: {type(exc).__name__}: {exc} (run with --debug for the "
                                       "traceback and report it)", status=1)


def report_error(args: argparse.Namespace, exc: BaseException, message: str, status: int = 2) -> int:
    """Log ``message`` (one line per line of it) and return ``status``; with --debug also the traceback."""
    for line in message.splitlines() or [type(exc).__name__]:
        log.error("%s", line)
    if getattr(args, "debug", False):
        log.error("traceback:", exc_info=exc)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
