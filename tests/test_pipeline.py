"""End to end on the tiny synthetic preset: every shipped approach config through every stage,
official files that `evaluate` reads, `adapt`, and the staged shell recipe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hybrid_asd.config import load_config
from hybrid_asd.data.clips import read_clip_list
from hybrid_asd.experiment import Experiment
from hybrid_asd.pipeline import run_stages
from hybrid_asd.scores import ScoreTable

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "hybrid_asd" / "configs"
RECIPE_CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.yaml"))
SLOW_DETECTORS = {"ae", "idnn", "flow"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from hybrid_asd.data.synthetic import generate

    root = tmp_path_factory.mktemp("tiny") / "data"
    generate(root, preset="tiny", seed=3, machines=["fan"], progress=False)
    return root


def tiny_overrides(path: Path) -> list[str]:
    """Tiny models and one epoch, whatever the config."""
    raw = load_config(path)
    out = ["extractor.epochs=1"] if raw["extractor"] is not None else []
    if raw["extractor"] is not None:
        out += ["extractor.backbone.name=tiny_cnn", "extractor.backbone.conf={}", "extractor.batch_size=32",
                "extractor.max_patches_per_clip=4"]
    for i, entry in enumerate(raw["detectors"]):
        out += [f"detectors.{i}.adaptation.n_splits=2"]
        if entry["cross_fit_splits"] >= 2:
            out.append(f"detectors.{i}.cross_fit_splits=2")
        if entry["name"] in SLOW_DETECTORS:
            out.append(f"detectors.{i}.conf.epochs=1")
        if entry["name"] == "flow":
            out += [f"detectors.{i}.conf.hidden_features=16", f"detectors.{i}.conf.transforms=2"]
    return out


def run_config(path: Path, data: Path, exp_root: Path) -> tuple[Experiment, dict]:
    config = load_config(path, [f"data.root={data}", "data.machine=fan", "seed=1"] + tiny_overrides(path))
    exp = Experiment(exp_root / path.stem)
    run_stages(exp, config, progress=False)
    return exp, config


@pytest.mark.parametrize("path", RECIPE_CONFIGS, ids=lambda p: p.stem)
def test_every_config_runs_end_to_end_on_tiny(path, tiny_data, tmp_path):
    from hybrid_asd.evaluation.official import evaluate_folder

    exp, config = run_config(path, tiny_data, tmp_path)
    ids = [d["id"] for d in config["detectors"]] + (["oe"] if config["extractor"] is not None else [])
    test_clips = read_clip_list(exp.root / "manifest" / "test.csv")
    for det in ids:
        table = ScoreTable.from_csv(exp.root / "scores" / f"{det}.csv")
        assert np.isfinite(table.scores).all()
        assert len(table.select(split="test")) == len(test_clips)
        names = sorted(p.name for p in (exp.root / "submission" / det).glob("anomaly_score_*.csv"))
        assert names == [f"anomaly_score_fan_section_{s:02d}_{d}_test.csv" for s in (0, 1) for d in ("source", "target")]
    # The fused system output goes through the official evaluator unchanged, and the experiment's
    # own result table (precision/recall/F1 from its decisions included) is the evaluator's, byte for byte.
    results = evaluate_folder([exp.root / "fused" / "submission"], clips=test_clips)
    assert 0.0 <= results.official_score <= 1.0
    assert len(results.rows) == 4
    assert all(row.f1 is not None for row in results.rows)
    results.to_official_csv(tmp_path / "official_fused.csv")
    assert (exp.root / "eval" / "result_fused.csv").read_bytes() == (tmp_path / "official_fused.csv").read_bytes()


def test_completed_stages_are_skipped_and_force_reruns(tiny_data, tmp_path, capsys):
    from hybrid_asd.cli import main

    exp, config = run_config(CONFIG_DIR / "demo_hybrid.yaml", tiny_data, tmp_path)
    scores = exp.root / "scores" / "knn.csv"
    before = scores.stat().st_mtime_ns
    assert main(["score", "--exp", str(exp.root), "--no-progress"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert scores.stat().st_mtime_ns == before
    assert main(["score", "--exp", str(exp.root), "--no-progress", "--force"]) == 0
    assert scores.stat().st_mtime_ns > before
    rescored = ScoreTable.from_csv(scores)
    assert np.array_equal(rescored.scores, ScoreTable.from_csv(scores).scores)


def test_adapt_adds_target_clips_and_refits_only_their_section(tiny_data, tmp_path):
    from hybrid_asd.detectors.stage import run_adapt

    exp, config = run_config(CONFIG_DIR / "demo_hybrid.yaml", tiny_data, tmp_path)
    # New target-domain normal clips of section 01: copies of its target test normals, renamed as
    # training clips (as a plant engineer would add recordings of a new operating condition).
    new_dir = tmp_path / "new" / "fan" / "train"
    new_dir.mkdir(parents=True)
    for i, src in enumerate(sorted((tiny_data / "fan" / "target_test").glob("section_01_target_test_normal_*.wav"))[:3]):
        shutil.copy(src, new_dir / f"section_01_target_train_normal_{900 + i:04d}_new_1.wav")
    untouched = exp.root / "detectors" / "knn" / "section_00"
    touched = exp.root / "detectors" / "knn" / "section_01"
    mtime_0 = max(p.stat().st_mtime_ns for p in untouched.rglob("*") if p.is_file())
    mtime_1 = max(p.stat().st_mtime_ns for p in touched.rglob("*") if p.is_file())
    before = ScoreTable.from_csv(exp.root / "scores" / "knn.csv").select(split="test", section=1)
    new = run_adapt(exp, config, [new_dir], device="cpu", progress=False)
    assert len(new) == 3
    train = read_clip_list(exp.root / "manifest" / "train.csv")
    assert sum(c.domain == "target" and c.section == 1 for c in train) == 6
    assert max(p.stat().st_mtime_ns for p in untouched.rglob("*") if p.is_file()) == mtime_0
    assert max(p.stat().st_mtime_ns for p in touched.rglob("*") if p.is_file()) > mtime_1
    after = ScoreTable.from_csv(exp.root / "scores" / "knn.csv").select(split="test", section=1)
    # The copied clips are now in the target memory: their kNN distance drops to (about) zero.
    copied = {p.name.replace("_target_train_normal_", "") for p in new_dir.iterdir()}
    assert len(copied) == 3
    assert after.scores.min() <= before.scores.min() + 1e-9
    assert np.sum(after.scores < 1e-4) >= 3
    assert run_adapt(exp, config, [new_dir], device="cpu", progress=False) == []  # nothing new twice


def test_shell_recipe_runs_stages_and_skips_completed_ones(tiny_data, tmp_path):
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", HYBRID_ASD=str(bin_dir / "hybrid-asd"))
    if not (bin_dir / "hybrid-asd").exists():
        pytest.skip("hybrid-asd console script not installed next to this Python")
    args = ["bash", str(ROOT / "recipes" / "dcase2021" / "fan.sh"), "--config", str(CONFIG_DIR / "baseline_ae.yaml"),
            "--data-root", str(tiny_data), "--exp-root", str(tmp_path / "exp"), "--set", "detectors.0.conf.epochs=1"]
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    exp = tmp_path / "exp" / "baseline_ae" / "fan" / "seed0"
    for log in ("prepare", "features", "fit", "score", "fuse", "evaluate"):
        assert (exp / "logs" / f"{log}.log").is_file()
    assert (exp / "eval" / "result_fused.csv").is_file()
    mtime = (exp / "scores" / "ae.csv").stat().st_mtime_ns
    second = subprocess.run(args + ["--stop-stage", "6"], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "already complete" in second.stdout
    assert (exp / "scores" / "ae.csv").stat().st_mtime_ns == mtime
    third = subprocess.run(args + ["--stage", "6", "--stop-stage", "6"], env=env, capture_output=True, text=True,
                           timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert (exp / "scores" / "ae.csv").stat().st_mtime_ns > mtime


@pytest.mark.slow
def test_demo_quick_on_tiny(tmp_path):
    from hybrid_asd.demo import run_demo

    out = run_demo(tmp_path / "demo", preset="tiny", quick=True, progress=False)
    assert (tmp_path / "demo" / "results.md").is_file()
    assert len(out["reports"]) == 4


def test_mean_shift_adaptation_through_the_stages(tiny_data, tmp_path):
    """`adaptation.mode: mean_shift` per section (Mahalanobis) and for one model of all sections (AE):
    each fitted model stores the shift of its target clips, and the stages score every test clip."""
    from hybrid_asd.detectors.adapt import DomainAdaptiveDetector

    overrides = [f"data.root={tiny_data}", "data.machine=fan", "extractor=null",
                 "detectors=[{name: mahalanobis, input: logmel_stats, adaptation: {mode: mean_shift}},"
                 " {name: ae, input: logmel_frames, per_section: false, cross_fit_splits: 2,"
                 " adaptation: {mode: mean_shift}, conf: {epochs: 1}}]", "ensemble.members=[mahalanobis, ae]"]
    config = load_config(None, overrides)
    exp = Experiment(tmp_path / "shift")
    run_stages(exp, config, progress=False)
    maha = DomainAdaptiveDetector.load(exp.root / "detectors" / "mahalanobis" / "section_01")
    assert maha.mode == "mean_shift" and set(maha.shifts_) == {"all"}
    ae = DomainAdaptiveDetector.load(exp.root / "detectors" / "ae" / "all")
    assert set(ae.shifts_) == {"0", "1"} and ae.shifts_["0"].shape == (640,)
    for det in ("mahalanobis", "ae"):
        table = ScoreTable.from_csv(exp.root / "scores" / f"{det}.csv")
        assert np.isfinite(table.scores).all() and len(table.select(split="test")) > 0
