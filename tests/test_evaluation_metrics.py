"""Metrics and result tables: sklearn equality, clamped harmonic means, both protocols by hand."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hybrid_asd.data.clips import Clip
from hybrid_asd.errors import ConfigError, ScoreError
from hybrid_asd.evaluation.metrics import auc_pauc, decision_metrics, evaluate_scores, harmonic_mean
from hybrid_asd.evaluation.thresholds import decisions_from_thresholds
from hybrid_asd.scores import ScoreTable


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("max_fpr", [0.1, 0.25, 1.0])
def test_auc_pauc_equals_sklearn_on_random_scores(seed: int, max_fpr: float) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    y[:2] = [0, 1]
    s = rng.normal(size=300) + 0.7 * y
    auc, pauc = auc_pauc(y, s, max_fpr)
    assert auc == roc_auc_score(y, s)
    assert pauc == roc_auc_score(y, s, max_fpr=max_fpr)


@pytest.mark.parametrize("seed", range(5))
def test_auc_pauc_equals_sklearn_on_heavily_tied_scores(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    y = rng.integers(0, 2, 400)
    y[:2] = [0, 1]
    s = rng.integers(0, 4, 400).astype(float) + (y * rng.integers(0, 2, 400))  # 5 distinct values
    auc, pauc = auc_pauc(y, s)
    assert auc == roc_auc_score(y, s)
    assert pauc == roc_auc_score(y, s, max_fpr=0.1)
    assert auc_pauc(np.zeros(3, int).tolist() + [1], [0.5, 0.5, 0.5, 0.5]) == (0.5, 0.5)


@pytest.mark.parametrize("n_normal, n_anomaly", [(10, 10), (50, 50), (20, 3), (7, 40)])
def test_auc_pauc_equals_sklearn_at_dcase_section_sizes(n_normal: int, n_anomaly: int) -> None:
    """The one-curve shortcut against roc_auc_score where fpr steps land exactly on max_fpr (10 normal clips),
    on perfect and inverted separation, rounded (tied) and float32 scores, for many draws."""
    rng = np.random.default_rng(n_normal * 100 + n_anomaly)
    y = np.r_[np.zeros(n_normal, int), np.ones(n_anomaly, int)]
    for draw in range(40):
        s = rng.normal(size=y.size) + rng.uniform(-1, 2) * y
        for scores in (s, np.round(s, 1), s.astype(np.float32), y * 1.0, -y * 1.0):
            for max_fpr in (0.1, 0.2, 0.5):
                assert auc_pauc(y, scores, max_fpr) == (roc_auc_score(y, scores),
                                                        roc_auc_score(y, scores, max_fpr=max_fpr)), draw


def test_auc_pauc_rejects_a_missing_class_and_bad_inputs() -> None:
    with pytest.raises(ValueError, match="both normal and anomalous.*3 normal and 0 anomalous"):
        auc_pauc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0 normal and 2 anomalous"):
        auc_pauc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="non-finite"):
        auc_pauc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        auc_pauc([0, 1], [0.1, 0.2, 0.3])


def test_harmonic_mean_clamps_at_machine_epsilon() -> None:
    eps = sys.float_info.epsilon
    assert harmonic_mean([0.5, 0.25]) == pytest.approx(1 / 3, rel=1e-15)
    # A zero (e.g. an F1 of 0) counts as epsilon, not as a division by zero.
    assert harmonic_mean([0.0, 0.5]) == pytest.approx(2 / (1 / eps + 2), rel=1e-12)
    assert harmonic_mean([0.0, -1.0]) == pytest.approx(eps, rel=1e-12)
    assert np.isfinite(harmonic_mean(np.array([0.0, 0.0])))
    with pytest.raises(ValueError):
        harmonic_mean([])


def test_decision_metrics_as_official_including_empty_predictions() -> None:
    assert decision_metrics([0, 1, 1, 0], [0, 1, 0, 1]) == (0.5, 0.5, 0.5)
    # No positive decision: precision 0 (tp / max(0, eps)), F1 0, as the official evaluator.
    assert decision_metrics([0, 1, 1], [0, 0, 0]) == (0.0, 0.0, 0.0)


# --- a small hand-computed case ---------------------------------------------------------------
# section 00; source: normals 0.1 0.4 0.35, anomalies 0.8 0.3; target: normals 0.5 0.2, anomaly 0.6
CASE = [("source", "normal", 0.1), ("source", "normal", 0.4), ("source", "normal", 0.35),
        ("source", "anomaly", 0.8), ("source", "anomaly", 0.3),
        ("target", "normal", 0.5), ("target", "normal", 0.2), ("target", "anomaly", 0.6)]


def small_table(extra_train: bool = True) -> ScoreTable:
    clips, scores = [], []
    for i, (domain, label, score) in enumerate(CASE):
        name = f"section_00_{domain}_test_{label}_{i:04d}.wav"
        clips.append(Clip(Path("/x/fan/test") / name, "fan", 0, domain, "test", label))
        scores.append(score)
    if extra_train:  # train rows and unlabelled rows must be ignored
        clips.append(Clip(Path("/x/fan/train/section_00_source_train_normal_0000.wav"), "fan", 0, "source",
                          "train", "normal"))
        clips.append(Clip(Path("/x/fan/test/section_00_source_test_0099.wav"), "fan", 0, "source", "test",
                          "unknown"))
        scores += [99.0, -99.0]
    return ScoreTable("hand", clips, np.array(scores))


def test_dcase2021_protocol_by_hand() -> None:
    res = evaluate_scores(small_table(), protocol="dcase2021")
    src, tgt = res.rows
    assert (src.domain, tgt.domain) == ("source", "target")
    assert src.auc == pytest.approx(4 / 6, abs=1e-15)  # 0.8 beats 3 normals, 0.3 beats one
    assert tgt.auc == 1.0
    assert src.precision is None and res.overall.arithmetic_mean["f1"] is None
    expected = 4 / (1 / src.auc + 1 / tgt.auc + 1 / src.pauc + 1 / tgt.pauc)
    assert res.official_score == pytest.approx(expected, abs=1e-14)


def test_dcase2022_protocol_by_hand() -> None:
    res = evaluate_scores(small_table(), protocol="dcase2022", max_fpr=0.2)
    src, tgt = res.rows
    # Each domain's normals against the anomalies of both domains (0.8, 0.3, 0.6).
    assert src.auc == pytest.approx(7 / 9, abs=1e-15)
    assert tgt.auc == pytest.approx(5 / 6, abs=1e-15)
    assert src.auc_all == pytest.approx(12 / 15, abs=1e-15)
    # pAUC over the whole section: ROC reaches TPR 2/3 at FPR 0.2 -> area 2/15; McClish
    # standardisation 0.5 * (1 + (2/15 - 0.02) / (0.2 - 0.02)) = 22/27.
    assert src.pauc == tgt.pauc == pytest.approx(22 / 27, abs=1e-12)
    # Official score: every AUC once per domain, the section's pAUC once.
    assert res.official_score == pytest.approx(3 / (9 / 7 + 6 / 5 + 27 / 22), abs=1e-12)
    assert res.by_domain()["source"] == pytest.approx({"auc": src.auc, "pauc": src.pauc}, abs=1e-15)


def test_decisions_give_precision_recall_f1_by_hand() -> None:
    table = small_table()
    decisions = decisions_from_thresholds(table, 0.45)
    res = evaluate_scores(table, protocol="dcase2021", decisions=decisions)
    src, tgt = res.rows
    assert (src.precision, src.recall) == (1.0, 0.5)  # 0.8 caught, 0.3 missed, no false alarm
    assert (tgt.precision, tgt.recall) == (0.5, 1.0)  # 0.6 caught, normal 0.5 flagged
    assert src.f1 == pytest.approx(2 / 3, abs=1e-15) and tgt.f1 == pytest.approx(2 / 3, abs=1e-15)
    assert res.machines["fan"].harmonic_mean["precision"] == pytest.approx(2 / 3, abs=1e-15)


def test_evaluate_scores_errors() -> None:
    with pytest.raises(ConfigError, match="unknown evaluation protocol 'dcase2099'"):
        evaluate_scores(small_table(), protocol="dcase2099")
    only_normals = small_table().select(label="normal")
    with pytest.raises(ScoreError, match=r"fan section 00 source: no anomalous clips"):
        evaluate_scores(only_normals)
    with pytest.raises(ScoreError, match="no labelled test clips"):
        evaluate_scores(small_table().select(split="train"))
    with pytest.raises(ScoreError, match="no decision results for"):
        evaluate_scores(small_table(), decisions={})


def test_official_csv_layout_and_json(tmp_path: Path) -> None:
    res = evaluate_scores(small_table(), protocol="dcase2021")
    res.to_official_csv(tmp_path / "r.csv")
    rows = list(csv.reader(open(tmp_path / "r.csv", newline="")))
    assert rows[0] == ["fan"]
    assert rows[1] == ["section", "domain", "AUC", "pAUC", "precision", "recall", "F1 score"]
    assert rows[2][:2] == ["00", "source"] and float(rows[2][2]) == res.rows[0].auc
    assert rows[2][4:] == ["", "", ""]  # no decisions
    assert [r[0] for r in rows[4:8]] == ["arithmetic mean", "harmonic mean", "source harmonic mean",
                                         "target harmonic mean"]
    assert rows[-2] == ["official score", "", repr(res.official_score)]
    assert "official score" in res.format()
    res.to_json(tmp_path / "r.json")
    assert '"official_score"' in (tmp_path / "r.json").read_text()

    res22 = evaluate_scores(small_table(), protocol="dcase2022")
    res22.to_official_csv(tmp_path / "r22.csv", ci95=True)
    rows = list(csv.reader(open(tmp_path / "r22.csv", newline="")))
    assert rows[1][:5] == ["section", "AUC (all)", "AUC (source)", "AUC (target)", "pAUC"]
    assert rows[2][:5] == ["00", repr(res22.rows[0].auc_all), repr(res22.rows[0].auc), repr(res22.rows[1].auc),
                           repr(res22.rows[0].pauc)]
    assert rows[-3][0] == "official score" and rows[-2][0] == "official score ci95"
    assert float(rows[-2][2]) > 0


@pytest.mark.parametrize("protocol", ["dcase2021", "dcase2022", "dcase2025"])
def test_units_without_normal_or_anomalous_clips_are_named_and_the_rest_evaluated(protocol: str, tmp_path) -> None:
    """fan section 00 is complete; section 01 target has normal clips only (no anomalies in that
    domain; dcase2022 and dcase2025 still evaluate it against the section's anomalies); pump section 00
    has no anomalous clips at all: it is named, everything else is evaluated."""
    rng = np.random.default_rng(0)
    clips, scores = [], []
    plan = [("fan", 0, "source", 10, 10), ("fan", 0, "target", 10, 10), ("fan", 1, "source", 10, 10),
            ("fan", 1, "target", 10, 0), ("pump", 0, "source", 10, 0)]
    for machine, section, domain, n_normal, n_anomaly in plan:
        for label, n in (("normal", n_normal), ("anomaly", n_anomaly)):
            for i in range(n):
                name = f"section_{section:02d}_{domain}_test_{label}_{i:04d}.wav"
                clips.append(Clip(Path(f"/d/{machine}/{domain}_test/{name}"), machine, section, domain, "test", label))
                scores.append(rng.normal() + (label == "anomaly"))
    res = evaluate_scores(ScoreTable("det", clips, np.array(scores)), protocol=protocol)
    skipped = {key: reason for key, reason in res.skipped}
    assert "no anomalous clips" in skipped[("pump", 0, "source")]
    evaluated = {(r.machine, r.section, r.domain) for r in res.rows}
    if protocol == "dcase2021":
        assert "no anomalous clips" in skipped[("fan", 1, "target")]
        assert evaluated == {("fan", 0, "source"), ("fan", 0, "target"), ("fan", 1, "source")}
    else:
        assert evaluated == {("fan", 0, "source"), ("fan", 0, "target"), ("fan", 1, "source"), ("fan", 1, "target")}
    if protocol == "dcase2025":  # dcase2022's numbers; the per-domain pAUC of a domain without anomalies is empty
        res22 = evaluate_scores(ScoreTable("det", clips, np.array(scores)), protocol="dcase2022")
        assert res.official_score == res22.official_score
        pauc_domain = {(r.machine, r.section, r.domain): r.pauc_domain for r in res.rows}
        assert pauc_domain[("fan", 1, "target")] is None
        assert all(v is not None for k, v in pauc_domain.items() if k != ("fan", 1, "target"))
    assert 0.0 < res.official_score < 1.0
    assert "not evaluated: pump section 00 source" in res.format()
    res.to_official_csv(tmp_path / "result.csv")
    only_normals = [c for c in clips if c.machine == "pump"]
    with pytest.raises(ScoreError, match="no anomalous clips"):
        evaluate_scores(ScoreTable("det", only_normals, np.zeros(len(only_normals))), protocol=protocol)
