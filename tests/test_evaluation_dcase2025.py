"""Protocol dcase2025 (DCASE 2025 / 2026): the official baseline's section table and summary, against
numbers computed by hand on a two-machine fixture."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hybrid_asd.config import load_config
from hybrid_asd.data.clips import Clip
from hybrid_asd.evaluation.dcase2025 import SECTION_COLUMNS, machine_means, section_table, summary_table
from hybrid_asd.evaluation.metrics import evaluate_scores
from hybrid_asd.scores import ScoreTable

# (machine, domain, label, score, decision). ToyCarEmu:
#   AUC (source): source normals {.1, .4} vs anomalies {.5, .2}: 3 of 4 pairs -> 3/4
#   AUC (target): target normals {.3, .6} vs anomalies {.5, .2}: 1 of 4 pairs -> 1/4
#   pAUC (all clips): ranked .6 N, .5 A, ...: the ROC stays at TPR 0 up to FPR .25 > .1, so the partial
#     area is 0 and McClish's standardisation gives 0.5 (1 + (0 - .005) / (.1 - .005)) = 9/19
#   pAUC (source): .5 A first: TPR 1 at FPR 0 -> 1;  pAUC (target): .6 N, .3 N, .2 A -> 9/19
# fan:
#   AUC (source): {.1, .2} vs {.9, .4, .25} -> 1;  AUC (target): {.3} vs {.9, .4, .25} -> 2/3
#   pAUC (all): .9 A, .4 A, .3 N: TPR 2/3 over FPR [0, .1] -> area 1/15 -> 0.5 (1 + (1/15 - .005) / .095) = 47/57
#   pAUC (source): 1;  pAUC (target): .4 A, .3 N, .25 A: TPR 1/2 -> area .05 -> 14/19
CLIPS = [
    ("ToyCarEmu", "source", "normal", 0.1, 0), ("ToyCarEmu", "source", "normal", 0.4, 1),
    ("ToyCarEmu", "source", "anomaly", 0.5, 1),
    ("ToyCarEmu", "target", "normal", 0.3, 0), ("ToyCarEmu", "target", "normal", 0.6, 1),
    ("ToyCarEmu", "target", "anomaly", 0.2, 0),
    ("fan", "source", "normal", 0.1, 0), ("fan", "source", "normal", 0.2, 0), ("fan", "source", "anomaly", 0.9, 1),
    ("fan", "target", "normal", 0.3, 0), ("fan", "target", "anomaly", 0.4, 1), ("fan", "target", "anomaly", 0.25, 0),
]
A = {"AUC (source)": 3 / 4, "AUC (target)": 1 / 4, "pAUC": 9 / 19, "pAUC (source)": 1.0, "pAUC (target)": 9 / 19}
B = {"AUC (source)": 1.0, "AUC (target)": 2 / 3, "pAUC": 47 / 57, "pAUC (source)": 1.0, "pAUC (target)": 14 / 19}
# decisions: ToyCarEmu source: tp 1, fp 1, fn 0 -> precision 1/2, recall 1, F1 2/3; target: tp 0, fp 1 -> 0, 0, 0
#            fan source: 1, 1, 1; target: tp 1, fp 0, fn 1 -> precision 1, recall 1/2, F1 2/3
A_DEC = {"precision (source)": 0.5, "recall (source)": 1.0, "F1 score (source)": 2 / 3,
         "precision (target)": 0.0, "recall (target)": 0.0, "F1 score (target)": 0.0}
B_DEC = {"precision (source)": 1.0, "recall (source)": 1.0, "F1 score (source)": 1.0,
         "precision (target)": 1.0, "recall (target)": 0.5, "F1 score (target)": 2 / 3}


def hmean(*values: float) -> float:
    return len(values) / sum(1 / v for v in values)


def table() -> tuple[ScoreTable, dict]:
    clips, scores, decisions = [], [], {}
    for i, (machine, domain, label, score, decision) in enumerate(CLIPS):
        name = f"section_00_{domain}_test_{label}_{i:04d}_noise_1.wav"
        clips.append(Clip(Path(machine) / "test" / name, machine, 0, domain, "test", label, i))
        scores.append(score)
        decisions.setdefault((machine, 0, domain), {})[name] = decision
    return ScoreTable("det", clips, scores), decisions


@pytest.fixture(scope="module")
def results():
    scores, decisions = table()
    return evaluate_scores(scores, protocol="dcase2025", decisions=decisions)


def test_section_rows_match_hand_computed_values(results):
    for machine, expected in (("ToyCarEmu", {**A, **A_DEC}), ("fan", {**B, **B_DEC})):
        sections, matrix = section_table(results, machine)
        assert sections == [0]
        got = dict(zip(SECTION_COLUMNS, matrix[0]))
        assert got == pytest.approx(expected, rel=1e-12)


def test_machine_means_and_summary_match_hand_computed_values(results):
    amean, hmean_row = machine_means(results, "fan")  # one section: both means are its values
    assert dict(zip(SECTION_COLUMNS, amean))["pAUC"] == pytest.approx(47 / 57)
    assert dict(zip(SECTION_COLUMNS, hmean_row))["AUC (target)"] == pytest.approx(2 / 3)
    summary = summary_table(results)
    assert summary["AUC (source)"] == pytest.approx(
        {"h-mean": hmean(3 / 4, 1.0), "a-mean": (3 / 4 + 1) / 2, "ToyCarEmu": 3 / 4, "fan": 1.0}, rel=1e-12)
    assert summary["AUC (target)"] == pytest.approx(
        {"h-mean": hmean(1 / 4, 2 / 3), "a-mean": (1 / 4 + 2 / 3) / 2, "ToyCarEmu": 1 / 4, "fan": 2 / 3}, rel=1e-12)
    assert summary["pAUC (source, target)"] == pytest.approx(
        {"h-mean": hmean(9 / 19, 47 / 57), "a-mean": (9 / 19 + 47 / 57) / 2, "ToyCarEmu": 9 / 19, "fan": 47 / 57},
        rel=1e-12)
    scored = (3 / 4, 1 / 4, 9 / 19, 1.0, 2 / 3, 47 / 57)
    assert summary["TOTAL score"] == pytest.approx({"h-mean": hmean(*scored), "a-mean": sum(scored) / 6}, rel=1e-12)
    assert summary["TOTAL score"]["h-mean"] == pytest.approx(5076 / 9439, rel=1e-12)  # = 6 / sum(1 / v)
    # the official score is the TOTAL score's h-mean, and equals protocol dcase2022's
    assert results.official_score == pytest.approx(hmean(*scored), rel=1e-12)
    scores, decisions = table()
    assert evaluate_scores(scores, protocol="dcase2022").official_score == pytest.approx(results.official_score,
                                                                                         rel=1e-12)


def test_result_csv_has_the_baseline_layout(results, tmp_path):
    results.to_official_csv(tmp_path / "result.csv")
    with open(tmp_path / "result.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["ToyCarEmu"]
    assert rows[1] == ["section", "AUC (source)", "AUC (target)", "pAUC", "pAUC (source)", "pAUC (target)",
                       "precision (source)", "precision (target)", "recall (source)", "recall (target)",
                       "F1 score (source)", "F1 score (target)"]
    assert rows[2][0] == "00" and float(rows[2][3]) == pytest.approx(9 / 19)
    assert [r[0] for r in rows[3:5]] == ["arithmetic mean", "harmonic mean"] and rows[5] == []
    start = rows.index(["metric", "h-mean", "a-mean", "ToyCarEmu", "fan"])
    assert [r[0] for r in rows[start + 1:start + 5]] == ["AUC (source)", "AUC (target)", "pAUC (source, target)",
                                                         "TOTAL score"]
    assert rows[start + 4][3:] == ["", ""]  # no per-machine TOTAL score
    assert rows[-2][0] == "official score" and float(rows[-2][2]) == pytest.approx(results.official_score, rel=1e-15)


def test_protocol_is_a_config_choice():
    assert load_config(None, ["evaluation.protocol=dcase2025"]).evaluation.protocol == "dcase2025"
