"""The ``predict`` and ``export`` subcommands of ``hybrid-asd`` (parsers and thin handlers; the CLI
module adds them with :func:`add_monitor_parsers`)."""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path
from typing import Callable

from hybrid_asd.errors import DataError
from hybrid_asd.monitor.inputs import DEFAULT_BATCH, DOMAIN_CHOICES
from hybrid_asd.monitor.watch import DEFAULT_INTERVAL

log = logging.getLogger("hybrid_asd.cli")


def section_arg(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a section number such as 00 or 3")
    return int(text)


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0 seconds")
    return value


def add_monitor_parsers(sub: argparse._SubParsersAction, add_device: Callable, add_progress: Callable) -> None:
    p = sub.add_parser(
        "predict", help="score new recordings (files, folders, long recordings, a watched folder) with a trained system",
        description="Score new WAV files with a trained system: the fused score, the decision at the system's "
                    "threshold and every member's raw and z-normalised score per clip (or per window).",
        epilog="Section and domain come from the file names when they follow a DCASE/MIMII scheme, else from "
               "--section/--domain. A bad file is skipped and listed at the end (exit status 2); the scores of "
               "the others are kept. --out is written as records come and moved into place at the end.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--exp", action="append", type=Path, metavar="EXP",
                     help="trained experiment folder (repeatable: several are fused with --weights)")
    src.add_argument("--system", type=Path, metavar="DIR", help="a system folder written by 'hybrid-asd export'")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="WAV files or folders of WAV files")
    p.add_argument("--weights", type=Path, default=None,
                   help="fusion weights file (ensemble: {members, rule, weights}, e.g. from 'hybrid-asd fuse'); "
                        "several --exp without it: every score table, equal weights")
    p.add_argument("--section", type=section_arg, default=None,
                   help="section of files whose names do not say it (not needed for a one-section system)")
    p.add_argument("--domain", choices=DOMAIN_CHOICES, default=None,
                   help="domain of files whose names do not say it (default unknown: scored against both domain "
                        "models, pooled normalisation and threshold)")
    p.add_argument("--out", type=Path, default=None, help="scores.csv or scores.jsonl (default: CSV on standard output)")
    p.add_argument("--window", type=seconds_arg, default=None, metavar="SECONDS",
                   help="score long recordings window by window (a time series)")
    p.add_argument("--hop", type=seconds_arg, default=None, metavar="SECONDS", help="window hop (default: --window)")
    p.add_argument("--watch", type=Path, default=None, metavar="DIR",
                   help="then score new WAV files of DIR as they appear, appending to --out, until Ctrl-C")
    p.add_argument("--interval", type=seconds_arg, default=DEFAULT_INTERVAL, metavar="SECONDS",
                   help=f"--watch polling interval (default {DEFAULT_INTERVAL:g})")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"clips per batch (default {DEFAULT_BATCH})")
    add_device(p)
    add_progress(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "export", help="copy what scoring needs into a portable system folder with a model card",
        description="Write a system folder (config, extractor, fitted detectors, normalisation statistics, "
                    "thresholds, model card; relative paths) that 'predict --system' and load_system() read "
                    "on any machine.",
    )
    p.add_argument("--exp", action="append", type=Path, required=True, metavar="EXP",
                   help="trained experiment folder (repeatable, fused with --weights)")
    p.add_argument("--weights", type=Path, default=None, help="fusion weights file for several --exp")
    p.add_argument("--out", type=Path, required=True, help="the system folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    p.set_defaults(func=cmd_export)


def cmd_predict(args: argparse.Namespace) -> int:
    from hybrid_asd.monitor.predict import run_predict  # lazy: loads torch (seconds)

    if not args.paths and args.watch is None:
        raise DataError("predict: give files or folders to score, or --watch DIR")
    if args.hop is not None and args.window is None:
        raise DataError("predict: --hop needs --window")
    summary = run_predict(
        args.exp or args.system, args.paths, weights=args.weights, section=args.section, domain=args.domain,
        out=args.out, window=args.window, hop=args.hop, watch=args.watch, interval=args.interval,
        device=args.device, batch_size=args.batch_size, progress=not args.no_progress,
    )
    where = f" into {summary.out}" if summary.out is not None else ""
    log.info("scored %d %s%s%s", summary.scored, "window(s)" if args.window else "clip(s)", where,
             " (watch stopped)" if summary.stopped else "")
    if summary.errors:
        log.error("%d input(s) skipped:", len(summary.errors))
        for line in summary.errors:
            log.error("  %s", line)
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hybrid_asd.monitor.export import export_system  # lazy: loads torch (seconds)

    command = shlex.join(["hybrid-asd", "export", *[a for e in args.exp for a in ("--exp", str(e))],
                          *(["--weights", str(args.weights)] if args.weights else []), "--out", str(args.out)])
    out = export_system(args.exp, args.out, weights=args.weights, overwrite=args.overwrite, command=command)
    print(f"exported system: {out}")
    return 0
