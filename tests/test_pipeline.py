"""End to end on the tiny synthetic preset: every shipped approach config through every stage,
official files that `evaluate` reads, which stages a config change reruns, `adapt`, and the staged
shell recipe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
import pytest

from hybrid_asd.config import load_config
from hybrid_asd.data.clips import read_clip_list
from hybrid_asd.evaluation.submission import read_decision_file
from hybrid_asd.experiment import Experiment
from hybrid_asd.pipeline import run_stage, run_stages
from hybrid_asd.scores import ScoreTable
from hybrid_asd.stages import CONFIG_KEYS, STAGES, fingerprint_keys

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
    out = ["extractor.epochs=1"] if raw.extractor is not None else []
    if raw.extractor is not None and raw.extractor.input == "waveform":  # the multibranch network, narrow
        out += ["extractor.backbone.conf.width=8", "extractor.backbone.conf.clip_seconds=2.0",
                "extractor.batch_size=32"]
    elif raw.extractor is not None:
        out += ["extractor.backbone.name=tiny_cnn", "extractor.backbone.conf={}", "extractor.batch_size=32",
                "extractor.max_patches_per_clip=4"]
    for i, entry in enumerate(raw.detectors):
        out += [f"detectors.{i}.adaptation.n_splits=2"]
        if entry.cross_fit_splits >= 2:
            out.append(f"detectors.{i}.cross_fit_splits=2")
        if entry.name in SLOW_DETECTORS:
            out.append(f"detectors.{i}.conf.epochs=1")
        if entry.name == "flow":
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
    test_clips = exp.test_clips()
    assert config.score_tables and sorted(exp.score_table_paths()) == sorted(config.score_tables)
    for det in config.score_tables:
        table = ScoreTable.from_csv(exp.score_table_path(det))
        assert np.isfinite(table.scores).all()
        assert len(table.select(split="test")) == len(test_clips)
        for kind in ("anomaly_score", "decision_result"):  # the OE scores' official files included
            names = sorted(p.name for p in exp.submission_dir(det).glob(f"{kind}_*.csv"))
            assert names == [f"{kind}_fan_section_{s:02d}_{d}_test.csv" for s in (0, 1) for d in ("source", "target")]
    # The fused system output goes through the official evaluator unchanged, and the experiment's
    # own result table (precision/recall/F1 from its decisions included) is the evaluator's, byte for byte.
    results = evaluate_folder([exp.fusion.submission], clips=test_clips, protocol=config.evaluation.protocol)
    assert 0.0 <= results.official_score <= 1.0
    assert len(results.rows) == 4
    assert all(row.f1 is not None for row in results.rows)
    results.to_official_csv(tmp_path / "official_fused.csv")
    assert exp.result_path("fused").read_bytes() == (tmp_path / "official_fused.csv").read_bytes()


def test_completed_stages_are_skipped_and_force_reruns(tiny_data, tmp_path, capsys):
    from hybrid_asd.cli import main

    exp, config = run_config(CONFIG_DIR / "demo_hybrid.yaml", tiny_data, tmp_path)
    scores = exp.score_table_path("knn")
    before = scores.stat().st_mtime_ns
    first = ScoreTable.from_csv(scores)
    assert main(["score", "--exp", str(exp.root), "--no-progress"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert scores.stat().st_mtime_ns == before
    assert main(["score", "--exp", str(exp.root), "--no-progress", "--force"]) == 0
    assert scores.stat().st_mtime_ns > before
    # rescoring with the same fitted models gives the same table (scoring is deterministic)
    rescored = ScoreTable.from_csv(scores)
    assert [str(c.path) for c in rescored.clips] == [str(c.path) for c in first.clips]
    np.testing.assert_array_equal(rescored.scores, first.scores)


@pytest.fixture(scope="module")
def fitted_hybrid(tiny_data, tmp_path_factory) -> tuple[Experiment, object]:
    """demo_hybrid on the tiny data, every stage run once (tests copy it before changing it)."""
    exp, config = run_config(CONFIG_DIR / "demo_hybrid.yaml", tiny_data, tmp_path_factory.mktemp("fitted"))
    return exp, config


@pytest.fixture(scope="module")
def new_target_dir(tmp_path_factory) -> Path:
    """Three new target-domain normal training clips of fan section 01 (as a plant engineer would add
    recordings of a new operating condition): the tiny preset generated with six target training
    clips per section, of which the last three are not in ``tiny_data``."""
    from hybrid_asd.data.synthetic import generate

    more = tmp_path_factory.mktemp("more") / "data"
    generate(more, preset="tiny", seed=3, machines=["fan"], progress=False, n_target_train=6, sections=[0, 1])
    out = tmp_path_factory.mktemp("new") / "fan" / "train"
    out.mkdir(parents=True)
    for src in sorted((more / "fan" / "train").glob("section_01_target_train_normal_000[345]_*.wav")):
        shutil.copy(src, out / src.name.replace("normal_000", "normal_090"))
    assert len(list(out.iterdir())) == 3
    return out


def copied(exp: Experiment, tmp_path: Path) -> Experiment:
    shutil.copytree(exp.root, tmp_path / "exp")
    return Experiment(tmp_path / "exp")


def test_adapt_adds_target_clips_and_refits_only_their_section(fitted_hybrid, new_target_dir, tmp_path):
    from hybrid_asd.detectors.adapt import DomainAdaptiveDetector
    from hybrid_asd.detectors.stage import run_adapt

    exp, config = copied(fitted_hybrid[0], tmp_path), fitted_hybrid[1]
    untouched = exp.detector_model_dir("knn", "section_00")
    touched = exp.detector_model_dir("knn", "section_01")
    mtime_0 = max(p.stat().st_mtime_ns for p in untouched.rglob("*") if p.is_file())
    mtime_1 = max(p.stat().st_mtime_ns for p in touched.rglob("*") if p.is_file())
    bank_before = DomainAdaptiveDetector.load(touched).models_["target"].n_bank_
    new = run_adapt(exp, config, [new_target_dir], device="cpu", progress=False)
    assert len(new) == 3
    train = exp.train_clips()
    assert sum(c.domain == "target" and c.section == 1 for c in train) == 6
    assert [str(c.path) for c in exp.adapted_clips()] == [str(c.path) for c in new]
    assert max(p.stat().st_mtime_ns for p in untouched.rglob("*") if p.is_file()) == mtime_0
    assert max(p.stat().st_mtime_ns for p in touched.rglob("*") if p.is_file()) > mtime_1
    assert DomainAdaptiveDetector.load(touched).models_["target"].n_bank_ == bank_before + 3
    # The new clips have out-of-fold train scores, and the embeddings grew by them.
    train_scores = ScoreTable.from_csv(exp.detector_train_scores_path("knn"))
    new_paths = {str(c.path) for c in new}
    assert np.isfinite([s for c, s in zip(train_scores.clips, train_scores.scores) if str(c.path) in new_paths]).all()
    assert len(read_clip_list(exp.embedding_clips_path)) == len(train) + len(exp.test_clips())
    assert run_adapt(exp, config, [new_target_dir], device="cpu", progress=False) == []  # nothing new twice


def test_after_adapt_fuse_evaluate_and_report_hold_the_new_clips(fitted_hybrid, new_target_dir, tmp_path, capsys):
    """Every table, the OE one included, lists the new clips; fuse and evaluate (which had been run)
    are rerun on them, so nothing downstream is stale, and rerunning them by hand works too."""
    from hybrid_asd.cli import main
    from hybrid_asd.detectors.stage import run_adapt

    exp, config = copied(fitted_hybrid[0], tmp_path), fitted_hybrid[1]
    old_fused = ScoreTable.from_csv(exp.fusion.fused)
    new = run_adapt(exp, config, [new_target_dir], device="cpu", progress=False)
    new_paths = {str(c.path) for c in new}
    for table_id in ("oe", "knn", "mahalanobis"):
        table = ScoreTable.from_csv(exp.score_table_path(table_id))
        assert new_paths <= {str(c.path) for c in table.select(split="train").clips}, table_id
    fused = ScoreTable.from_csv(exp.fusion.fused)
    assert len(fused) == len(old_fused) + 3 and new_paths <= set(fused.keys())
    assert all(exp.stage_done(s.name, config) for s in STAGES)
    assert exp.result_path("fused").stat().st_mtime_ns >= exp.fusion.fused.stat().st_mtime_ns
    assert main(["fuse", "--exp", str(exp.root), "--force", "--no-progress"]) == 0
    assert main(["evaluate", "--exp", str(exp.root), "--force", "--no-progress"]) == 0
    assert main(["report", str(exp.root)]) == 0


def test_adapt_refuses_test_clips_listed_named_or_copied(fitted_hybrid, tiny_data, tmp_path):
    from hybrid_asd.detectors.stage import run_adapt
    from hybrid_asd.errors import StageError

    exp, config = copied(fitted_hybrid[0], tmp_path), fitted_hybrid[1]
    train_before = exp.manifest_path("train").read_bytes()
    test_clip = next(c for c in exp.test_clips() if c.domain == "target" and c.label == "normal")
    with pytest.raises(StageError, match="is a test clip of this experiment"):
        run_adapt(exp, config, [Path(test_clip.path)], device="cpu", progress=False)
    named = tmp_path / "named" / "fan" / "target_test"
    named.mkdir(parents=True)
    shutil.copy(test_clip.path, named / Path(test_clip.path).name)
    with pytest.raises(StageError, match="named as a test clip"):
        run_adapt(exp, config, [named], device="cpu", progress=False)
    renamed = tmp_path / "renamed" / "fan" / "train"
    renamed.mkdir(parents=True)
    shutil.copy(test_clip.path, renamed / f"section_{test_clip.section:02d}_target_train_normal_0950_x_1.wav")
    with pytest.raises(StageError, match="same content as the test clip"):
        run_adapt(exp, config, [renamed], device="cpu", progress=False)
    assert exp.manifest_path("train").read_bytes() == train_before


@pytest.mark.parametrize("name, folder, message", [
    ("section_01_target_train_normal_0950_x_1.wav", "valve/train", "this experiment is 'fan'"),
    ("section_01_source_train_normal_0950_x_1.wav", "fan/train", "source-domain clip"),
    ("section_05_target_train_normal_0950_x_1.wav", "fan/train", "section 05 is not a section"),
    ("section_01_target_train_anomaly_0950_x_1.wav", "fan/train", "normal clips only"),
    ("section_01_machine_0950_.wav", "fan/supplemental", "is a supplemental clip"),  # DCASE 2025+ layout
])
def test_adapt_refuses_other_machine_types_source_clips_and_unknown_sections(
        fitted_hybrid, new_target_dir, tmp_path, name, folder, message):
    from hybrid_asd.detectors.stage import run_adapt
    from hybrid_asd.errors import StageError

    exp, config = fitted_hybrid  # refused before anything is written: no copy needed
    before = exp.manifest_path("train").read_bytes()
    path = tmp_path / folder / name
    path.parent.mkdir(parents=True)
    shutil.copy(next(new_target_dir.iterdir()), path)
    with pytest.raises(StageError, match=message):
        run_adapt(exp, config, [path], device="cpu", progress=False)
    assert exp.manifest_path("train").read_bytes() == before


def test_failed_adapt_changes_nothing_and_an_interrupted_one_is_finished_by_a_rerun(
        fitted_hybrid, new_target_dir, tmp_path, monkeypatch):
    import hybrid_asd.detectors.stage as detector_stage
    from hybrid_asd.errors import DataError

    exp, config = copied(fitted_hybrid[0], tmp_path), fitted_hybrid[1]
    folder = tmp_path / "with_corrupt" / "fan" / "train"
    shutil.copytree(new_target_dir, folder)
    (folder / "section_01_target_train_normal_0999_x_1.wav").write_bytes(b"RIFF....not audio")
    snapshot = {p: p.read_bytes() for p in (exp.manifest_path("train"), exp.embeddings_path,
                                             exp.score_table_path("oe"))}
    with pytest.raises(DataError, match="0999"):
        detector_stage.run_adapt(exp, config, [folder], device="cpu", progress=False)
    assert all(p.read_bytes() == data for p, data in snapshot.items())
    assert all(exp.stage_done(s.name, config) for s in STAGES)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(detector_stage, "refit_sections", crash)
    with pytest.raises(KeyboardInterrupt):
        detector_stage.run_adapt(exp, config, [new_target_dir], device="cpu", progress=False)
    assert not exp.stage_done("fit", config)  # the clips are in, the refit is not: fit is not complete
    monkeypatch.undo()
    assert detector_stage.run_adapt(exp, config, [new_target_dir], device="cpu", progress=False) == []
    assert all(exp.stage_done(s.name, config) for s in STAGES)
    knn = ScoreTable.from_csv(exp.score_table_path("knn"))
    assert len(knn.select(split="train")) == len(exp.train_clips())


def test_run_after_adapt_keeps_the_adapted_clips(fitted_hybrid, new_target_dir, tmp_path):
    from hybrid_asd.detectors.stage import run_adapt

    exp, config = copied(fitted_hybrid[0], tmp_path), fitted_hybrid[1]
    new = run_adapt(exp, config, [new_target_dir], device="cpu", progress=False)
    scores = exp.score_table_path("knn")
    mtime = scores.stat().st_mtime_ns
    run_stages(exp, config, progress=False)  # prepare rescans the data root, which lacks the new clips
    assert {str(c.path) for c in new} <= {str(c.path) for c in exp.train_clips()}
    assert scores.stat().st_mtime_ns == mtime  # nothing changed, nothing refitted


def test_prepare_with_changed_clip_lists_reruns_later_stages(fitted_hybrid, tmp_path):
    exp, config = copied(fitted_hybrid[0], tmp_path), fitted_hybrid[1]
    clips = exp.train_clips()
    exp.write_clips("train", clips[:-1])  # as if the data root had gained a clip since
    run_stage(exp, config, "prepare", progress=False, force=True)
    assert [s.name for s in STAGES if exp.stage_done(s.name, config)] == ["prepare"]


def test_shell_recipe_runs_stages_and_skips_completed_ones(tiny_data, tmp_path):
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", HYBRID_ASD=str(bin_dir / "hybrid-asd"))
    if not (bin_dir / "hybrid-asd").exists():
        pytest.skip("hybrid-asd console script not installed next to this Python")
    args = ["bash", str(ROOT / "recipes" / "dcase2021" / "fan.sh"), "--config", str(CONFIG_DIR / "baseline_ae.yaml"),
            "--data-root", str(tiny_data), "--exp-root", str(tmp_path / "exp"), "--set", "detectors.0.conf.epochs=1"]
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    exp = Experiment.for_run(tmp_path / "exp", "baseline_ae", "fan", 0)
    for stage in STAGES:  # the recipe's stages are the table's
        assert exp.log_path(stage.name).is_file(), stage.name
        assert f"stage {stage.number} ({stage.name})" in first.stdout
    assert exp.result_path("fused").is_file()
    mtime = exp.score_table_path("ae").stat().st_mtime_ns
    second = subprocess.run(args + ["--stop-stage", "6"], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "already complete" in second.stdout
    assert "stage 7" not in second.stdout
    assert exp.score_table_path("ae").stat().st_mtime_ns == mtime
    third = subprocess.run(args + ["--stage", "score", "--stop-stage", "6"], env=env, capture_output=True, text=True,
                           timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert exp.score_table_path("ae").stat().st_mtime_ns > mtime
    bad = subprocess.run(args + ["--set", "evaluation.threshold_quantile=abc"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "evaluation.threshold_quantile = 'abc'" in bad.stderr


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
    maha = DomainAdaptiveDetector.load(exp.detector_model_dir("mahalanobis", "section_01"))
    assert maha.mode == "mean_shift" and set(maha.shifts_) == {"all"}
    ae = DomainAdaptiveDetector.load(exp.detector_model_dir("ae", "all"))
    assert set(ae.shifts_) == {"0", "1"} and ae.shifts_["0"].shape == (640,)
    for det in ("mahalanobis", "ae"):
        table = ScoreTable.from_csv(exp.score_table_path(det))
        assert np.isfinite(table.scores).all() and len(table.select(split="test")) > 0


# Which stages each config key sends back to work, written out by hand (not derived from the stage
# table): a stage reruns when a key it reads, or a key of any stage before it, changes.
RERUN = {
    "data": ("prepare", "features", "train", "extract", "fit", "score", "fuse", "evaluate"),
    "features": ("features", "train", "extract", "fit", "score", "fuse", "evaluate"),
    "extractor": ("train", "extract", "fit", "score", "fuse", "evaluate"),
    "seed": ("train", "extract", "fit", "score", "fuse", "evaluate"),
    "detectors": ("fit", "score", "fuse", "evaluate"),
    "evaluation": ("score", "fuse", "evaluate"),
    "ensemble": ("fuse", "evaluate"),
}
CHANGES = {
    "data": "data.channel=1", "features": "features.n_mels=64", "extractor": "extractor.epochs=3", "seed": "seed=7",
    "detectors": "detectors.0.conf.k=2", "evaluation": "evaluation.threshold_quantile=0.5",
    "ensemble": "ensemble.rule=rank_mean",
}


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_changing_a_config_key_reruns_exactly_the_stages_that_depend_on_it(key, tmp_path):
    base = ["data.machine=fan", "detectors=[{name: knn, conf: {k: 1}}]"]
    config = load_config(None, base)
    changed = load_config(None, base + [CHANGES[key]])
    exp = Experiment(tmp_path / "exp")
    exp.init(config)
    for stage in STAGES:
        exp.mark_done(stage.name, config)
    exp.init(changed, overwrite=True)
    rerun = tuple(s.name for s in STAGES if not exp.stage_done(s.name, changed))
    assert rerun == RERUN[key]
    assert all(key in fingerprint_keys(name) for name in rerun)


def test_name_device_and_description_rerun_nothing(tmp_path):
    config = load_config(None, ["data.machine=fan"])
    exp = Experiment(tmp_path / "exp")
    exp.init(config)
    for stage in STAGES:
        exp.mark_done(stage.name, config)
    other = load_config(None, ["data.machine=fan", "name=renamed", "device=cpu", "description=x"])
    assert all(exp.stage_done(s.name, other) for s in STAGES)


def test_threshold_quantile_change_rewrites_decisions_and_nothing_upstream(tiny_data, tmp_path):
    overrides = [f"data.root={tiny_data}", "data.machine=fan", "extractor=null",
                 "detectors=[{name: mahalanobis, input: logmel_stats, adaptation: {mode: pooled}}]"]
    config = load_config(None, overrides)
    exp = Experiment(tmp_path / "exp")
    run_stages(exp, config, progress=False)
    decisions = exp.submission_dir("mahalanobis") / "decision_result_fan_section_00_source_test.csv"
    outputs = {"prepare": exp.manifest_path("train"), "fit": exp.detector_train_scores_path("mahalanobis"),
               "score": decisions, "fuse": exp.fusion.fused, "evaluate": exp.result_path("fused")}
    before = {stage: path.stat().st_mtime_ns for stage, path in outputs.items()}
    old_decisions = read_decision_file(decisions)

    changed = load_config(None, overrides + ["evaluation.threshold_quantile=0.2"])
    exp.init(changed, overwrite=True)
    for stage in STAGES:  # as the recipe does: every stage, each skipped when complete
        run_stage(exp, changed, stage, device="cpu", progress=False)
    assert all(exp.stage_done(s.name, changed) for s in STAGES)
    after = {stage: path.stat().st_mtime_ns for stage, path in outputs.items()}
    assert [s for s in outputs if after[s] != before[s]] == ["score", "fuse", "evaluate"]
    # a lower threshold marks more test clips anomalous
    new_decisions = read_decision_file(decisions)
    assert sum(new_decisions.values()) > sum(old_decisions.values())


def _mimii_folder(root: Path, normals: int, abnormals: int, seconds: float = 1.0) -> Path:
    """A MIMII-layout folder of 8-channel files (the MIMII format) with one id."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    for label, count, gain in (("normal", normals, 0.05), ("abnormal", abnormals, 0.2)):
        folder = root / "pump" / "id_00" / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            audio = (gain * rng.standard_normal((int(16000 * seconds), 8))).astype(np.float32)
            sf.write(folder / f"{i:08d}.wav", audio, 16000, subtype="PCM_16")
    return root


def test_mimii_normal_and_abnormal_clips_sharing_a_file_name_are_scored_apart(tmp_path):
    """MIMII names normal/00000000.wav and abnormal/00000000.wav alike: both reach the official
    files, under the DCASE 2020 names of those recordings."""
    from hybrid_asd.evaluation.submission import read_score_file

    data = _mimii_folder(tmp_path / "mimii", normals=8, abnormals=3)
    config = load_config(None, [f"data.root={data}", "data.machine=pump", "extractor=null",
                                "detectors=[{name: mahalanobis, input: logmel_stats, adaptation: {mode: pooled}}]"])
    exp = Experiment(tmp_path / "exp")
    results = run_stages(exp, config, progress=False)
    scores = read_score_file(exp.submission_dir("mahalanobis") / "anomaly_score_pump_section_00_source_test.csv")
    assert {"normal_id_00_00000000.wav", "anomaly_id_00_00000000.wav"} <= set(scores)
    assert len(scores) == 6  # 3 abnormal + as many normal test clips (the MIMII baseline's split)
    assert 0.0 <= results["fused"].official_score <= 1.0


def test_mimii_split_without_training_clips_says_why_and_the_override_keeps_some(tmp_path, capsys):
    from hybrid_asd.cli import main

    data = _mimii_folder(tmp_path / "mimii", normals=4, abnormals=4)
    args = ["prepare", "--exp", str(tmp_path / "exp"), "--data-root", str(data), "--machine", "pump",
            "--set", "extractor=null"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no training clips" in err and "id_00: 4 normal, 4 abnormal" in err and "--mimii-test-normals" in err
    assert main(args + ["--mimii-test-normals", "1"]) == 0
    exp = Experiment(tmp_path / "exp")
    assert len(exp.train_clips()) == 3
    assert sum(c.label == "normal" for c in exp.test_clips()) == 1


def test_run_from_a_later_stage_continues_with_the_saved_config(tiny_data, tmp_path, capsys):
    from hybrid_asd.cli import main

    overrides = [f"data.root={tiny_data}", "data.machine=fan", "extractor=null",
                 "detectors=[{name: mahalanobis, input: logmel_stats, adaptation: {mode: pooled}}]"]
    exp = Experiment(tmp_path / "exp")
    run_stages(exp, load_config(None, overrides), stop_stage="score", progress=False)
    assert main(["run", "--exp", str(exp.root), "--stage", "fuse", "--no-progress"]) == 0
    assert exp.result_path("fused").is_file()
    assert "official score" in capsys.readouterr().out


def test_stale_fused_scores_are_not_evaluated_and_the_report_says_so(fitted_hybrid, tmp_path, capsys):
    from hybrid_asd.cli import main
    from hybrid_asd.evaluation.report_data import load_experiment

    exp, config = copied(fitted_hybrid[0], tmp_path), fitted_hybrid[1]
    exp.clear_stages_after("score")  # as after new scores: fused/ is older than its inputs
    assert main(["evaluate", "--exp", str(exp.root), "--force", "--no-progress"]) == 2
    assert "fused.csv is stale" in capsys.readouterr().err
    notes = [n.text for n in load_experiment(exp.root).notes]
    assert any("'fuse' stage is not complete" in n for n in notes)


def test_a_failed_fuse_keeps_the_previous_weights(fitted_hybrid, tmp_path):
    from hybrid_asd.errors import ScoreError
    from hybrid_asd.ensemble.stage import run_fuse

    exp = copied(fitted_hybrid[0], tmp_path)
    weights = exp.fusion.weights.read_bytes()
    knn = ScoreTable.from_csv(exp.score_table_path("knn"))
    ScoreTable("knn", knn.clips[1:], knn.scores[1:]).to_csv(exp.score_table_path("knn"))  # a clip short
    with pytest.raises(ScoreError, match="clip list differs"):
        run_fuse(list(exp.score_table_paths().values()), exp.fusion.folder, weights={"knn": 2.0})
    assert exp.fusion.weights.read_bytes() == weights


def test_documented_cross_experiment_fuse_of_two_approaches_with_oe_tables(tiny_data, tmp_path, capsys):
    """docs/recipes.md: fuse --tune over a wilkinghoff2021_serial and a lopez2021_parallel experiment
    (both have an 'oe' table), then fuse --weights with the tuned weights."""
    from hybrid_asd.cli import main

    exp_root = tmp_path / "exp"
    for name in ("wilkinghoff2021_serial", "lopez2021_parallel"):
        config = load_config(CONFIG_DIR / f"{name}.yaml", [f"data.root={tiny_data}", "data.machine=fan"]
                             + tiny_overrides(CONFIG_DIR / f"{name}.yaml"))
        run_stages(Experiment.for_run(exp_root, name, "fan", 0), config, progress=False)
    wilk, lopez = (exp_root / n / "fan" / "seed0" for n in ("wilkinghoff2021_serial", "lopez2021_parallel"))
    dev = tmp_path / "ours" / "fan" / "dev"
    assert main(["fuse", "--scores", str(wilk), str(lopez), "--detectors", "lopez2021_parallel/oe", "knn", "cflow",
                 "--tune", "--out", str(dev)]) == 0
    tuned = yaml.safe_load((dev / "weights.yaml").read_text())["ensemble"]
    assert sorted(tuned["members"]) == ["cflow", "knn", "lopez2021_parallel/oe"]
    assert set(tuned["weights"]) == {"knn", "lopez2021_parallel/oe", "cflow"}
    assert "lopez2021_parallel/oe" in (dev / "tuning.txt").read_text()
    evaluated = tmp_path / "ours" / "fan" / "eval"
    assert main(["fuse", "--scores", str(wilk), str(lopez), "--detectors", "lopez2021_parallel/oe", "knn", "cflow",
                 "--weights", str(dev / "weights.yaml"), "--out", str(evaluated)]) == 0
    np.testing.assert_allclose(ScoreTable.from_csv(evaluated / "fused.csv").scores,
                               ScoreTable.from_csv(dev / "fused.csv").scores)
    # a plain id takes the tables of every approach, each its own member
    both = tmp_path / "both"
    assert main(["fuse", "--scores", str(wilk), str(lopez), "--detectors", "oe", "--out", str(both)]) == 0
    members = yaml.safe_load((both / "weights.yaml").read_text())["ensemble"]["members"]
    assert members == ["wilkinghoff2021_serial/oe", "lopez2021_parallel/oe"]


def test_a_published_checkpoint_is_used_as_its_card_says(fitted_hybrid, tiny_data, tmp_path, monkeypatch):
    """publish, then run the card's 'Use' commands word for word on other data (here the tiny data)."""
    import shlex

    from hybrid_asd.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["publish", "--exp", str(fitted_hybrid[0].root), "--name", "mine", "--dest", "checkpoints"]) == 0
    card = (tmp_path / "checkpoints" / "mine" / "MODEL_CARD.md").read_text()
    steps = card.split("## Use", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    for line in filter(None, (raw.split("#", 1)[0].strip() for raw in steps.splitlines())):
        line = line.replace("<root>", str(tiny_data))
        if line.startswith("hybrid-asd "):
            assert main(shlex.split(line)[1:] + (["--no-progress"] if " run " in f" {line} " else [])) == 0, line
        else:
            assert subprocess.run(line, shell=True, cwd=tmp_path).returncode == 0, line
    used = Experiment(tmp_path / "exp" / "mine")
    assert not used.stage_done("train", load_config(used.config_path))  # the published extractor, not retrained
    assert used.result_path("fused").is_file() and (used.report_dir / "report.html").is_file()


def test_adapt_interrupted_before_the_clip_list_doubles_no_embedding_on_rerun(fitted_hybrid, new_target_dir, tmp_path,
                                                                               monkeypatch):
    import hybrid_asd.detectors.stage as detector_stage

    exp, config = copied(fitted_hybrid[0], tmp_path), fitted_hybrid[1]

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(exp, "write_clips", crash)  # embeddings and OE rows appended, train.csv not yet
    with pytest.raises(KeyboardInterrupt):
        detector_stage.run_adapt(exp, config, [new_target_dir], device="cpu", progress=False)
    monkeypatch.undo()
    assert len(detector_stage.run_adapt(exp, config, [new_target_dir], device="cpu", progress=False)) == 3
    paths = [str(c.path) for c in read_clip_list(exp.embedding_clips_path)]
    assert len(paths) == len(set(paths)) == len(exp.train_clips()) + len(exp.test_clips())
    oe = ScoreTable.from_csv(exp.score_table_path("oe"))
    assert len(oe.keys()) == len(set(oe.keys())) == len(paths)


def test_an_experiment_saved_before_a_config_key_existed_continues_without_overwrite(tmp_path):
    config = load_config(None, ["data.machine=fan", "detectors=[{name: knn, input: logmel_stats}]"])
    exp = Experiment(tmp_path / "exp")
    exp.init(config)
    saved = yaml.safe_load(exp.config_path.read_text())
    del saved["detectors"][0]["standardise"], saved["extractor"]["target_validation"]  # keys added by #14
    exp.config_path.write_text(yaml.safe_dump(saved))
    exp.init(config)  # the same config: no "different config" refusal
    with pytest.raises(Exception, match="different config"):
        exp.init(load_config(None, ["data.machine=fan", "detectors=[{name: knn, input: logmel_stats, standardise: false}]"]))
