"""The command line: help texts, version, clear one-line errors, evaluate on the reference files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hybrid_asd import __version__
from hybrid_asd.cli import build_parser, main

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: hybrid-asd" in out and len(out) > 100


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("synth", "train", "extract", "fit", "score", "fuse", "evaluate", "demo", "adapt", "report"):
        assert command in out


def test_config_error_is_one_clear_line(tmp_path, capsys):
    rc = main(["prepare", "--exp", str(tmp_path / "e"), "--data-root", str(tmp_path), "--machine", "fan",
               "--set", "extractor.epoch=1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "extractor.epoch" in err and "Traceback" not in err


def test_missing_data_root_is_named(tmp_path, capsys):
    rc = main(["prepare", "--exp", str(tmp_path / "e"), "--data-root", str(tmp_path / "nowhere"), "--machine", "fan"])
    assert rc == 2
    assert "nowhere" in capsys.readouterr().err


def test_stage_without_prepare_says_which_stage(tmp_path, capsys):
    rc = main(["fit", "--exp", str(tmp_path / "e")])
    assert rc == 2
    assert "prepare" in capsys.readouterr().err


def test_evaluate_reproduces_official_table(shared_data, tmp_path):
    ref = shared_data / "dcase2021t2-evaluator-reference"
    out = tmp_path / "result.csv"
    rc = main(["evaluate", "--scores", str(ref / "scores"), "--ground-truth",
               str(shared_data / "dcase2021t2-eval-ground-truth"), "--out", str(out)])
    assert rc == 0
    assert out.read_bytes() == (ref / "official_result.csv").read_bytes()


def test_console_script_module_runs():
    proc = subprocess.run([sys.executable, "-m", "hybrid_asd.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and __version__ in proc.stdout
