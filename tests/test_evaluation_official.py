"""Official evaluation: reproduce the official evaluator's table; submission files and their errors."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from hybrid_asd.data.clips import Clip
from hybrid_asd.data.ground_truth import read_ground_truth_dir
from hybrid_asd.errors import ScoreError
from hybrid_asd.evaluation.metrics import evaluate_scores
from hybrid_asd.evaluation.official import evaluate_folder, evaluate_submission, labels_from_clips
from hybrid_asd.evaluation.submission import (
    read_decision_file,
    read_score_file,
    read_submission_dir,
    write_submission,
)
from hybrid_asd.scores import ScoreTable

REFERENCE = "dcase2021t2-evaluator-reference"
GROUND_TRUTH = "dcase2021t2-eval-ground-truth"


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def assert_same_table(ours: list[list[str]], reference: list[list[str]]) -> None:
    """Same shape and row order; text cells identical, numbers equal within 1e-12."""
    assert len(ours) == len(reference)
    for rowno, (mine, ref) in enumerate(zip(ours, reference), start=1):
        assert len(mine) == len(ref), f"row {rowno}: {mine} vs {ref}"
        for a, b in zip(mine, ref):
            try:
                fa, fb = float(a), float(b)
            except ValueError:
                assert a == b, f"row {rowno}: {a!r} != {b!r}"
                continue
            if a in ("03", "04", "05"):  # section ids are labels: compare as text
                assert a == b, f"row {rowno}"
            assert math.isclose(fa, fb, rel_tol=0, abs_tol=1e-12), f"row {rowno}: {a} vs {b}"


def test_evaluate_folder_reproduces_official_result(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.csv"
    res = evaluate_folder(shared_data / REFERENCE / "scores", ground_truth=shared_data / GROUND_TRUTH,
                          out_csv=out)
    reference = read_rows(shared_data / REFERENCE / "official_result.csv")
    assert_same_table(read_rows(out), reference)
    assert res.official_score == pytest.approx(float(reference[-2][2]), abs=1e-12)
    assert len(res.rows) == 7 * 3 * 2 and res.has_decisions


def test_evaluate_scores_on_a_score_table_matches_official_result(shared_data: Path) -> None:
    """The ScoreTable entry point gives the same table as the folder entry point."""
    truth = read_ground_truth_dir(shared_data / GROUND_TRUTH)
    sub = read_submission_dir(shared_data / REFERENCE / "scores")
    clips, scores = [], []
    for (machine, section, domain), labels in truth.items():
        for name, label in labels.items():
            clips.append(Clip(Path(name), machine, section, domain, "test", ("normal", "anomaly")[label]))
            scores.append(sub.scores[(machine, section, domain)][name])
    res = evaluate_scores(ScoreTable("ref", clips, np.array(scores)), decisions=sub.decisions)
    assert_same_table(res.official_rows(), read_rows(shared_data / REFERENCE / "official_result.csv"))


# --- submission files ------------------------------------------------------------------------
def make_table(rng: np.random.Generator) -> ScoreTable:
    clips, scores = [], []
    for machine in ("fan", "ToyCar"):
        for section in (0, 1):
            for domain, n in (("source", 6), ("target", 4)):
                for i in range(n):
                    label = "anomaly" if i % 2 else "normal"
                    name = f"section_{section:02d}_{domain}_test_{label}_{i:04d}.wav"
                    clips.append(Clip(Path(f"/d/{machine}/test/{name}"), machine, section, domain, "test", label))
            for i in range(3):
                clips.append(Clip(Path(f"/d/{machine}/train/section_{section:02d}_source_train_normal_{i:04d}.wav"),
                                  machine, section, "source", "train", "normal"))
    scores = rng.normal(size=len(clips)) * 10.0 ** rng.integers(-8, 8, len(clips))
    scores[:3] = [0.1 + 0.2, 1e-300, -0.0]  # floats whose text form is easy to get wrong
    return ScoreTable("det", clips, scores)


def test_submission_round_trip_is_repr_exact(tmp_path: Path) -> None:
    table = make_table(np.random.default_rng(0))
    paths = write_submission(table, tmp_path, thresholds=0.0)
    assert len(paths) == 2 * 2 * 2 * 2  # machines x sections x domains x (score, decision)
    assert (tmp_path / "anomaly_score_fan_section_01_target_test.csv").read_text().count("\n") == 4
    sub = read_submission_dir(tmp_path)
    test = table.select(split="test")
    for clip, score in zip(test.clips, test.scores):
        key = (clip.machine, clip.section, clip.domain)
        got = sub.scores[key][clip.name]
        assert got == score and repr(got) == repr(float(score))
        assert sub.decisions[key][clip.name] == int(score > 0.0)
    # The folder evaluates to the same results as the table it came from.
    labels = labels_from_clips(table.clips)
    from_files = evaluate_submission([tmp_path], labels)
    from_table = evaluate_scores(table, decisions=sub.decisions)
    assert from_files.official_rows() == from_table.official_rows()


def test_write_submission_per_section_thresholds(tmp_path: Path) -> None:
    table = make_table(np.random.default_rng(1))
    keys = {(c.machine, c.section, c.domain) for c in table.clips}
    thresholds = {k: 0.5 for k in keys}
    write_submission(table, tmp_path, thresholds)
    decisions = read_decision_file(tmp_path / "decision_result_ToyCar_section_00_source_test.csv")
    scores = read_score_file(tmp_path / "anomaly_score_ToyCar_section_00_source_test.csv")
    assert decisions == {n: int(s > 0.5) for n, s in scores.items()}
    del thresholds[("fan", 1, "target")]
    with pytest.raises(ScoreError, match=r"no decision threshold for \('fan', 1, 'target'\)"):
        write_submission(table, tmp_path / "again", thresholds)


@pytest.fixture()
def folder(tmp_path: Path) -> tuple[Path, dict]:
    table = make_table(np.random.default_rng(2))
    out = tmp_path / "sub"
    write_submission(table, out)
    return out, labels_from_clips(table.clips)


def test_missing_score_file_is_named(folder: tuple[Path, dict]) -> None:
    out, labels = folder
    (out / "anomaly_score_fan_section_01_source_test.csv").unlink()
    with pytest.raises(ScoreError, match="missing.*anomaly_score_fan_section_01_source_test.csv"):
        evaluate_submission([out], labels)


def test_extra_score_file_is_named(folder: tuple[Path, dict]) -> None:
    out, labels = folder
    shutil.copy(out / "anomaly_score_fan_section_01_source_test.csv", out / "anomaly_score_pump_section_01_source_test.csv")
    with pytest.raises(ScoreError, match="without ground truth.*anomaly_score_pump_section_01_source_test.csv"):
        evaluate_submission([out], labels)


def test_wrong_row_count_is_named(folder: tuple[Path, dict]) -> None:
    out, labels = folder
    path = out / "anomaly_score_ToyCar_section_00_target_test.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(ScoreError, match=r"anomaly_score_ToyCar_section_00_target_test.csv: 3 rows but the "
                                         r"ground truth lists 4 clips; 1 clip\(s\) missing"):
        evaluate_submission([out], labels)
    path.write_text(path.read_text() + "section_00_target_test_other_0009.wav,0.5\nsection_00_x.wav,1\n")
    with pytest.raises(ScoreError, match=r"5 rows .* lists 4 clips.*not in the ground truth"):
        evaluate_submission([out], labels)


@pytest.mark.parametrize(("text", "message"), [
    ("abc", r"row 3: score 'abc' of .* is not a number"),
    ("nan", r"row 3: score of .* is nan"),
    ("inf", r"row 3: score of .* is inf"),
])
def test_bad_score_values_are_named_with_file_and_row(folder: tuple[Path, dict], text: str, message: str) -> None:
    out, _ = folder
    path = out / "anomaly_score_fan_section_00_source_test.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + "," + text
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ScoreError, match="anomaly_score_fan_section_00_source_test.csv " + message):
        read_submission_dir(out)


@pytest.mark.parametrize(("row", "message"), [
    ("a.wav,0.1,7", r"row 2: expected '<file name>,<value>'"),
    ("a.wav", r"row 2: expected '<file name>,<value>'"),
    ("b.wav,0.2", r"row 2: b.wav already listed in row 1"),
])
def test_bad_rows_are_named(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "anomaly_score_fan_section_00_source_test.csv"
    path.write_text(f"b.wav,0.5\n{row}\n")
    with pytest.raises(ScoreError, match=r"anomaly_score_fan_section_00_source_test.csv " + message):
        read_submission_dir(tmp_path)


def test_bad_decisions_and_names(tmp_path: Path) -> None:
    (tmp_path / "decision_result_fan_section_00_source_test.csv").write_text("a.wav,1\nb.wav,2\n")
    with pytest.raises(ScoreError, match="row 2: decision '2' of b.wav is not 0 or 1"):
        read_decision_file(tmp_path / "decision_result_fan_section_00_source_test.csv")
    (tmp_path / "anomaly_score_fan_id_00.csv").write_text("a.wav,1\n")
    with pytest.raises(ScoreError, match="anomaly_score_fan_id_00.csv: not an official file name"):
        read_submission_dir(tmp_path)
    with pytest.raises(ScoreError, match="score folder not found"):
        read_submission_dir(tmp_path / "nope")


def test_decision_files_partly_missing_is_an_error(tmp_path: Path) -> None:
    table = make_table(np.random.default_rng(3))
    write_submission(table, tmp_path, thresholds=0.0)
    (tmp_path / "decision_result_fan_section_00_target_test.csv").unlink()
    with pytest.raises(ScoreError, match="decision file.*missing.*decision_result_fan_section_00_target_test.csv"):
        evaluate_submission(tmp_path, labels_from_clips(table.clips))


def test_evaluate_folder_from_clip_manifest_and_machine_filter(tmp_path: Path) -> None:
    from hybrid_asd.data.clips import write_clip_list

    table = make_table(np.random.default_rng(4))
    write_submission(table, tmp_path / "fan_only", thresholds=None)
    for path in (tmp_path / "fan_only").glob("*ToyCar*"):
        path.unlink()
    write_clip_list(tmp_path / "clips.csv", table.clips)
    res = evaluate_folder([tmp_path / "fan_only"], clips=tmp_path / "clips.csv", machines=["fan"],
                          protocol="dcase2022", out_csv=tmp_path / "out.csv")
    assert {r.machine for r in res.rows} == {"fan"} and not res.has_decisions
    assert read_rows(tmp_path / "out.csv")[0] == ["fan"]
    with pytest.raises(ScoreError, match="missing"):
        evaluate_folder([tmp_path / "fan_only"], clips=table.clips)
