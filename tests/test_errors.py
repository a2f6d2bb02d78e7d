"""Every user-facing failure is one line naming the file and what to do, exit status 2, no traceback
(#14 item 12): short clips, corrupt saved state, unreadable YAML, unwritable output folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hybrid_asd.cli import main
from hybrid_asd.config import load_config
from hybrid_asd.experiment import Experiment
from hybrid_asd.pipeline import run_stages

DETECTORS = ("[{name: knn, input: embedding, conf: {k: 1}}, {name: mahalanobis, input: logmel_stats},"
             " {name: ae, input: logmel_frames, per_section: false, cross_fit_splits: 0,"
             " adaptation: {mode: pooled}, conf: {epochs: 1}}]")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Experiment:
    """A small experiment with a FAISS index (knn), .npy arrays (mahalanobis) and a model.pt (ae)."""
    from hybrid_asd.data.synthetic import generate

    data = tmp_path_factory.mktemp("tiny") / "data"
    generate(data, preset="tiny", seed=3, machines=["fan"], progress=False)
    config = load_config(None, [
        f"data.root={data}", "data.machine=fan", "extractor.backbone.name=tiny_cnn", "extractor.epochs=1",
        "extractor.batch_size=32", "extractor.max_patches_per_clip=4", f"detectors={DETECTORS}",
        "detectors.0.cross_fit_splits=2", "detectors.1.cross_fit_splits=2"])
    exp = Experiment(tmp_path_factory.mktemp("fitted") / "exp")
    run_stages(exp, config, stop_stage="score", progress=False)
    return exp


def copy_of(exp: Experiment, tmp_path: Path) -> Experiment:
    shutil.copytree(exp.root, tmp_path / "exp")
    return Experiment(tmp_path / "exp")


def one_line_error(capsys, rc: int, *names: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if " ERROR " in line]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("pattern, detector", [
    ("detectors/ae/all/**/model.pt", "ae"),
    ("detectors/mahalanobis/section_00/**/*.npy", "mahalanobis"),
    ("detectors/knn/section_01/**/index.faiss", "knn"),
])
def test_corrupt_saved_detector_is_one_line_naming_its_folder_and_the_refit(pattern, detector, fitted, tmp_path,
                                                                           capsys):
    exp = copy_of(fitted, tmp_path)
    target = sorted(exp.root.glob(pattern))[0]
    target.write_bytes(b"corrupt" * 10)
    rc = main(["score", "--exp", str(exp.root), "--force", "--no-progress"])
    line = one_line_error(capsys, rc, str(exp.detector_dir(detector)))
    assert "hybrid-asd fit" in line or "'fit' stage" in line


def test_corrupt_embeddings_npy_is_one_line(fitted, tmp_path, capsys):
    exp = copy_of(fitted, tmp_path)
    exp.embeddings_path.write_bytes(b"\x93NUMPY garbage")
    rc = main(["score", "--exp", str(exp.root), "--force", "--no-progress"])
    one_line_error(capsys, rc, "embeddings.npy", "extract")


def test_corrupt_experiment_config_is_one_line(fitted, tmp_path, capsys):
    exp = copy_of(fitted, tmp_path)
    exp.config_path.write_bytes(bytes(range(256)))
    rc = main(["score", "--exp", str(exp.root), "--no-progress"])
    one_line_error(capsys, rc, "config.yaml")


def test_bad_weights_yaml_and_unwritable_out_are_one_line(fitted, tmp_path, capsys):
    bad = tmp_path / "weights.yaml"
    bad.write_text("ensemble: {weights: [unclosed\n")
    rc = main(["fuse", "--scores", str(fitted.root), "--weights", str(bad), "--out", str(tmp_path / "f")])
    one_line_error(capsys, rc, "weights.yaml")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc = main(["fuse", "--scores", str(fitted.root), "--out", str(blocker / "fused")])
    one_line_error(capsys, rc, "a_file")


def test_a_clip_too_short_for_one_frame_is_named(tmp_path, capsys):
    folder = tmp_path / "data" / "fan" / "train"
    folder.mkdir(parents=True)
    for i in range(3):
        samples = 160 if i == 1 else 16000
        sf.write(folder / f"section_00_source_train_normal_{i:04d}_a_1.wav", np.zeros(samples, np.float32), 16000)
    rc = main(["run", "--exp", str(tmp_path / "exp"), "--data-root", str(tmp_path / "data"), "--machine", "fan",
               "--set", "extractor=null", "--set", "detectors=[{name: mahalanobis, input: logmel_stats}]",
               "--stop-stage", "features", "--no-progress"])
    line = one_line_error(capsys, rc, "section_00_source_train_normal_0001_a_1.wav", "160 samples")
    assert "too short" in line


def test_debug_shows_the_traceback(tmp_path, capsys):
    from hybrid_asd.utils import setup_logging

    try:
        rc = main(["--debug", "prepare", "--exp", str(tmp_path / "e"), "--data-root", str(tmp_path / "none"),
                   "--machine", "fan"])
    finally:
        setup_logging("INFO")  # as any main() call in the suite leaves it (not every library at DEBUG)
    assert rc == 2 and "Traceback" in capsys.readouterr().err
