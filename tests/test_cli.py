"""The command line: help texts, version, the stage table, choices, clear one-line errors (exit 2,
no traceback) for bad config values, evaluate on the reference files."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from hybrid_asd import __version__
from hybrid_asd.cli import SYNTH_PRESETS, build_parser, main
from hybrid_asd.stages import STAGES

SUBPARSERS: dict[str, argparse.ArgumentParser] = (
    build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
)
SUBCOMMANDS = sorted(SUBPARSERS)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help_naming_each_of_its_options(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {SUBPARSERS[command].prog}")  # an old alias shows its stage's name
    for action in SUBPARSERS[command]._actions:
        for option in action.option_strings:
            assert option in out, f"{command} --help does not show {option}"
        if action.help and action.help is not argparse.SUPPRESS:
            assert action.help.split()[0] in out


def test_help_lists_every_stage_and_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("synth", "run", "demo", "adapt", "report", "stages", "schema", "download", "publish", "predict",
                    "export"):
        assert f"    {command}" in out
    for stage in STAGES:
        assert f"stage {stage.number}: {stage.help}" in " ".join(out.split())


def test_stage_subcommands_are_the_table_and_old_names_are_aliases():
    for stage in STAGES:
        assert stage.name in SUBPARSERS
        for alias in stage.aliases:
            assert SUBPARSERS[alias] is SUBPARSERS[stage.name]
    assert {"fuse-exp", "eval-exp"} <= set(SUBPARSERS)
    device_options = {name for name, p in SUBPARSERS.items() if any("--device" in a.option_strings for a in p._actions)}
    assert {s.name for s in STAGES if s.takes_device} <= device_options
    assert not {s.name for s in STAGES if not s.takes_device and s.name != "prepare"} & device_options


def test_stages_command_lists_the_table(capsys):
    assert main(["stages", "--names"]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == [f"{s.number} {s.name}" for s in STAGES]
    assert main(["stages"]) == 0
    table = capsys.readouterr().out
    assert "evaluation" in table.splitlines()[6]  # score reads the evaluation section


def test_run_takes_stage_names_or_numbers():
    args = build_parser().parse_args(["run", "--exp", "e", "--stage", "5", "--stop-stage", "score"])
    assert (args.stage, args.stop_stage) == ("fit", "score")
    args = build_parser().parse_args(["run", "--exp", "e", "--stage", "fuse-exp"])
    assert args.stage == "fuse"


@pytest.mark.parametrize("argv", [
    ["run", "--exp", "e", "--stage", "9"],
    ["run", "--exp", "e", "--stage", "fitt"],
    ["fit", "--exp", "e", "--device", "tpu"],
    ["fuse", "--scores", "a", "--out", "o", "--rule", "mean"],
    ["fuse", "--scores", "a", "--out", "o", "--protocol", "dcase2099"],
    ["fuse", "--scores", "a", "--out", "o", "--tune-method", "random"],
    ["evaluate", "--scores", "a", "--protocol", "x"],
    ["report", "e", "--embedding", "mds"],
    ["synth", "--out", "o", "--preset", "huge"],
    ["download", "--dest", "d", "--parts", "everything"],
    ["fuse"],  # neither --exp nor --scores
    ["fuse", "--exp", "e", "--scores", "a"],
    ["fuse", "--exp", "e", "--tune"],  # a --scores option with the stage
    ["evaluate", "--scores", "a", "--force"],  # a stage option without --exp
])
def test_bad_choices_and_option_mixes_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: hybrid-asd" in capsys.readouterr().err


def test_synth_presets_are_the_generators():
    from hybrid_asd.data.synthetic import PRESETS

    assert tuple(sorted(SYNTH_PRESETS)) == tuple(sorted(PRESETS))


# The values the issue lists as crashing late or with a traceback: each ends at load time, exit 2,
# with one line naming the key.
BAD_SETS = {
    "features.n_mels=abc": "features.n_mels", "data.sample_rate=abc": "data.sample_rate",
    "data.duration=abc": "data.duration", "seed=abc": "seed", "device=tpu": "device",
    "evaluation.threshold_quantile=abc": "evaluation.threshold_quantile", "extractor=abc": "extractor",
    "features.hop_length=0": "features.hop_length", "extractor.epoch=1": "extractor.epoch",
    "detectors=[{name: knnx}]": "detectors.0.name", "ensemble.members=[knnx]": "ensemble.members.0",
    "ensemble.rule=mean": "ensemble.rule", "evaluation.protocol=dcase2099": "evaluation.protocol",
}


@pytest.mark.parametrize("override", BAD_SETS, ids=list(BAD_SETS))
def test_bad_set_is_one_line_naming_the_key_and_exit_2(override, tmp_path, capsys):
    rc = main(["prepare", "--exp", str(tmp_path / "e"), "--data-root", str(tmp_path), "--machine", "fan",
               "--set", override])
    assert rc == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert BAD_SETS[override] in lines[0] and "--set" in lines[0] and "Traceback" not in captured.err
    assert not (tmp_path / "e").exists()  # nothing was started


def test_bad_set_in_a_fresh_process_has_no_traceback(tmp_path):
    argv = ["run", "--exp", str(tmp_path / "e"), "--data-root", str(tmp_path), "--machine", "fan",
            "--set", "evaluation.threshold_quantile=abc"]
    proc = subprocess.run([sys.executable, "-m", "hybrid_asd.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "evaluation.threshold_quantile = 'abc'" in proc.stderr


def test_missing_data_root_is_named(tmp_path, capsys):
    rc = main(["prepare", "--exp", str(tmp_path / "e"), "--data-root", str(tmp_path / "nowhere"), "--machine", "fan"])
    assert rc == 2
    assert "nowhere" in capsys.readouterr().err


def test_stage_without_prepare_says_which_stage(tmp_path, capsys):
    rc = main(["fit", "--exp", str(tmp_path / "e")])
    assert rc == 2
    assert "prepare" in capsys.readouterr().err


def test_schema_command_prints_the_shipped_schema(capsys):
    import json

    from hybrid_asd.config import config_schema

    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == config_schema()


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


def test_prepare_checks_the_data_root_before_saving_the_config_so_a_fix_needs_no_overwrite(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    train = tmp_path / "data" / "fan" / "train"
    train.mkdir(parents=True)
    for i in range(2):
        sf.write(train / f"section_00_source_train_normal_{i:04d}_a_1.wav", np.zeros(16000, np.float32), 16000)
    exp = tmp_path / "e"
    assert main(["prepare", "--exp", str(exp), "--data-root", str(tmp_path / "dta"), "--machine", "fan"]) == 2
    assert "dta" in capsys.readouterr().err
    assert not (exp / "config.yaml").exists()
    assert main(["prepare", "--exp", str(exp), "--data-root", str(tmp_path / "data"), "--machine", "fna"]) == 2
    assert not (exp / "config.yaml").exists()
    assert main(["prepare", "--exp", str(exp), "--data-root", str(tmp_path / "data"), "--machine", "fan"]) == 0
    assert (exp / "config.yaml").is_file()


def test_synth_sections_option_generates_those_sections(tmp_path, capsys):
    """``--sections N`` gives sections 00..N-1 (DCASE 2021's six at demo sizes with ``--sections 6``), recorded
    in synthetic.json; a section's clips are those of a run with more sections; 0 is a one-line error."""
    import json

    for n in (1, 2):
        out = tmp_path / f"s{n}"
        assert main(["synth", "--out", str(out), "--preset", "tiny", "--machines", "valve", "--sections", str(n),
                     "--no-progress"]) == 0
        names = sorted(p.name for p in (out / "valve").rglob("*.wav"))
        assert {name[:10] for name in names} == {f"section_{s:02d}" for s in range(n)}
        assert json.loads((out / "synthetic.json").read_text())["settings"]["sections"] == list(range(n))
    one = {p.relative_to(tmp_path / "s1"): p.read_bytes() for p in (tmp_path / "s1").rglob("*.wav")}
    assert one and all((tmp_path / "s2" / rel).read_bytes() == data for rel, data in one.items())
    assert main(["synth", "--out", str(tmp_path / "s0"), "--preset", "tiny", "--sections", "0", "--no-progress"]) == 2
    assert "sections" in capsys.readouterr().err
