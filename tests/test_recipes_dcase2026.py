"""recipes/dcase2026: the thin per-machine scripts over the shared staged recipe, on generated two-channel
clips with the official 2026 names, through to the 2025/2026 result table."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dcase_fixtures import write_dcase2026_dev
from hybrid_asd.config import load_config
from hybrid_asd.experiment import Experiment
from hybrid_asd.extractor.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "dcase2026"
MACHINES = ("ToyCar", "ToyCarEmu", "bearingEmu", "fan", "gearboxEmu", "sliderEmu", "valveEmu")
TINY = ["extractor.backbone.name=tiny_cnn", "extractor.backbone.conf={}", "extractor.epochs=1",
        "extractor.batch_size=16", "features.patch_frames=16", "features.patch_hop=8",
        "detectors.0.adaptation.n_splits=2", "detectors.0.cross_fit_splits=2",
        "detectors.1.adaptation.n_splits=2", "detectors.1.cross_fit_splits=2"]


@pytest.fixture(scope="module")
def data_2026(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("d26") / "dev_data"
    write_dcase2026_dev(root, machines=("ToyCar", "fan"), n_source=8, n_target=3, n_test=3)
    return root


@pytest.fixture
def env() -> dict[str, str]:
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "hybrid-asd").exists():
        pytest.skip("hybrid-asd console script not installed next to this Python")
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", HYBRID_ASD=str(bin_dir / "hybrid-asd"))


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def test_recipe_scripts_and_configs():
    for machine in MACHINES:
        script = RECIPE / f"{machine}.sh"
        assert os.access(script, os.X_OK) and f"--machine {machine}" in script.read_text()
    assert (RECIPE / "conf").resolve() == (ROOT / "hybrid_asd" / "configs").resolve()
    ae = load_config(RECIPE / "conf" / "dcase2026_baseline_ae.yaml")
    serial = load_config(RECIPE / "conf" / "dcase2026_wilkinghoff_serial.yaml")
    assert (ae.data.channel, ae.evaluation.protocol, ae.detectors[0].conf["batch_size"]) == (0, "dcase2025", 256)
    assert (serial.data.channel, serial.extractor.labels, serial.evaluation.protocol) == (
        "all", "section_attribute", "dcase2025")


@pytest.mark.slow  # about a minute: every stage is its own process (the in-process run is in test_channels_supplemental)
def test_machine_script_runs_the_serial_hybrid_on_two_channel_clips(data_2026, tmp_path, env):
    args = ["bash", str(RECIPE / "ToyCar.sh"), "--data-root", str(data_2026), "--exp-root", str(tmp_path / "exp"),
            *sets(TINY)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    exp = Experiment.for_run(tmp_path / "exp", "dcase2026_wilkinghoff_serial", "ToyCar", 0)
    meta = read_checkpoint(exp.extractor.checkpoint)["meta"]
    assert meta["in_channels"] == 2  # data.channel: all: near and far microphone as two input planes
    # attribute classes: source clips car_A2_..._noise_1, target clips ..._noise_2
    assert meta["classes"] == ["ToyCar/section_00/source/car_A2_spd_28V_mic_1_noise_1",
                               "ToyCar/section_00/target/car_A2_spd_28V_mic_1_noise_2"]
    with open(exp.result_path("fused"), newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["ToyCar"] and rows[1][:4] == ["section", "AUC (source)", "AUC (target)", "pAUC"]
    assert any(r and r[0] == "TOTAL score" for r in rows)
    assert "stage 8 (evaluate)" in done.stdout


@pytest.mark.slow
def test_run_sh_evaluates_every_machine_with_the_2025_2026_scores(data_2026, tmp_path, env):
    args = ["bash", str(RECIPE / "run.sh"), "--machines", "ToyCar fan", "--config",
            str(RECIPE / "conf" / "dcase2026_baseline_ae.yaml"), "--data-root", str(data_2026), "--exp-root",
            str(tmp_path / "exp"), "--set", "detectors.0.conf.epochs=1"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "exp" / "dcase2026_baseline_ae" / "result_seed0.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert ["metric", "h-mean", "a-mean", "ToyCar", "fan"] in rows
    assert rows[-2][0] == "official score" and 0.0 <= float(rows[-2][2]) <= 1.0
