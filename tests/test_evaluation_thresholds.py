"""Decision thresholds: gamma fit vs the true quantile, fallbacks, per-section/domain choice."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from hybrid_asd.data.clips import Clip
from hybrid_asd.errors import ScoreError
from hybrid_asd.evaluation.thresholds import decisions_from_thresholds, gamma_threshold, section_thresholds
from hybrid_asd.scores import ScoreTable


def test_gamma_threshold_close_to_true_quantile() -> None:
    dist = scipy.stats.gamma(a=3.0, loc=-2.0, scale=0.7)
    sample = dist.rvs(size=20000, random_state=np.random.default_rng(0))
    threshold = gamma_threshold(sample, 0.9)
    assert threshold == pytest.approx(dist.ppf(0.9), abs=0.02)  # ppf(0.9) = 1.72, scale 0.7
    assert gamma_threshold(sample, 0.5) == pytest.approx(dist.ppf(0.5), abs=0.02)


def test_gamma_threshold_falls_back_on_degenerate_scores(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hybrid_asd.evaluation.thresholds"):
        assert gamma_threshold(np.full(50, 1.5)) == 1.5
    assert "empirical 0.90 quantile" in caplog.text
    assert gamma_threshold(np.array([0.0, 1.0] * 10), 0.9) == np.quantile([0.0, 1.0] * 10, 0.9)
    with pytest.raises(ScoreError, match="no normal scores"):
        gamma_threshold(np.array([]))
    with pytest.raises(ScoreError, match="non-finite"):
        gamma_threshold(np.array([1.0, np.nan, 2.0]))


def table_with_train(n_source: int, n_target: int, rng: np.random.Generator) -> ScoreTable:
    clips, scores = [], []
    for domain, n, offset in (("source", n_source, 0.0), ("target", n_target, 5.0)):
        for i in range(n):
            clips.append(Clip(Path(f"/d/section_00_{domain}_train_normal_{i:04d}.wav"), "fan", 0, domain,
                              "train", "normal"))
            scores.append(offset + rng.gamma(2.0))
    clips.append(Clip(Path("/d/section_00_target_test_anomaly_0000.wav"), "fan", 0, "target", "test", "anomaly"))
    scores.append(100.0)
    return ScoreTable("det", clips, np.array(scores))


def test_section_thresholds_pool_domains_unless_a_domain_has_enough_rows() -> None:
    rng = np.random.default_rng(1)
    few = table_with_train(300, 3, rng)
    th = section_thresholds(few, 0.9)
    pooled = gamma_threshold(few.select(split="train").scores, 0.9)
    assert th == {("fan", 0, "source"): pytest.approx(gamma_threshold(few.select(split="train", domain="source").scores)),
                  ("fan", 0, "target"): pooled}
    many = table_with_train(300, 40, rng)
    th = section_thresholds(many, 0.9)
    target_scores = many.select(split="train", domain="target").scores
    assert th[("fan", 0, "target")] == gamma_threshold(target_scores, 0.9)
    assert th[("fan", 0, "target")] > 5.0 > th[("fan", 0, "source")]
    decisions = decisions_from_thresholds(many, th)
    assert decisions == {("fan", 0, "target"): {"section_00_target_test_anomaly_0000.wav": 1}}
    with pytest.raises(ScoreError, match="no train rows"):
        section_thresholds(many.select(split="test"))


def test_gamma_fit_on_small_scale_skewed_scores_stays_inside_the_data() -> None:
    """kNN cosine distances (scale 1e-3, piled up near the minimum): the plain three-parameter MLE
    puts the 0.9 quantile far above every score; the threshold must stay near the data's quantile."""
    rng = np.random.default_rng(1)
    scores = rng.lognormal(-6.5, 1.0, 200)
    broken = scipy.stats.gamma.ppf(0.9, *scipy.stats.gamma.fit(scores))
    assert broken > 10 * scores.max()  # what the baselines' fit gives here
    threshold = gamma_threshold(scores, 0.9)
    assert np.quantile(scores, 0.75) < threshold < np.quantile(scores, 0.98)
    squared = rng.exponential(0.002, 200) ** 2 * 500  # degenerate MLE (shape -> 0): refused
    assert np.quantile(squared, 0.75) < gamma_threshold(squared, 0.9) < np.quantile(squared, 0.98)


def test_fit_agrees_refuses_thresholds_outside_the_scores() -> None:
    from hybrid_asd.evaluation.thresholds import fit_agrees

    scores = np.linspace(0.0, 1.0, 201)
    assert fit_agrees(scores, 0.9, 0.9)
    assert not fit_agrees(scores, 0.5, 0.9)  # half the scores above a 0.9 quantile
    assert not fit_agrees(scores, 3.5, 0.9)  # beyond the range
    assert not fit_agrees(np.array([1.0, 2.0, 3.0]), 30.0, 0.9)


def test_section_thresholds_use_only_held_out_rows_where_given() -> None:
    rng = np.random.default_rng(2)
    table = table_with_train(300, 3, rng)
    held = [str(c.path) for c in table.clips if c.split == "train" and c.domain == "source"][:60]
    # in-sample rows (all but the held-out ones) are biased low, as OE scores of training clips are
    scores = table.scores.copy()
    for i, clip in enumerate(table.clips):
        if clip.split == "train" and str(clip.path) not in held:
            scores[i] -= 1.5
    biased = ScoreTable("oe", table.clips, scores)
    fitted = section_thresholds(biased, 0.9, reference=held)
    held_scores = np.array([s for c, s in zip(biased.clips, biased.scores) if str(c.path) in held])
    assert fitted[("fan", 0, "source")] == pytest.approx(gamma_threshold(held_scores, 0.9))
    assert fitted[("fan", 0, "source")] > section_thresholds(biased, 0.9)[("fan", 0, "source")]


def test_thresholds_file_round_trips(tmp_path: Path) -> None:
    from hybrid_asd.evaluation.thresholds import read_thresholds, write_thresholds

    th = {("fan", 0, "source"): 0.1 + 0.2, ("fan", 1, "target"): 1e-7}
    write_thresholds(tmp_path / "t.csv", th)
    assert read_thresholds(tmp_path / "t.csv") == th
    (tmp_path / "bad.csv").write_text("x,y\n")
    with pytest.raises(ScoreError, match="bad.csv"):
        read_thresholds(tmp_path / "bad.csv")


def test_thresholds_on_dcase2025_2026_names_feed_the_dcase2025_table(tmp_path: Path) -> None:
    """DCASE 2026 names (a ``noise_<n>`` attribute) with DCASE 2025+ supplemental clips used as training
    clips (data.supplemental.use: train, source domain): the thresholds written beside the official files
    cover both domains, the supplemental rows count for the source domain's own threshold, and the
    dcase2025 result table's precision, recall and F1 are those of the decision files."""
    from hybrid_asd.data.names import parse_clip_path
    from hybrid_asd.data.settings import SupplementalSettings
    from hybrid_asd.data.supplemental import as_training_clips
    from hybrid_asd.evaluation.metrics import evaluate_scores
    from hybrid_asd.evaluation.submission import read_submission_dir, write_submission_of
    from hybrid_asd.evaluation.thresholds import read_thresholds

    root = tmp_path / "d" / "ToyCar"
    tail = "car_A1_spd_28V_mic_1_noise_1"
    train = [parse_clip_path(root / "train" / f"section_00_{d}_train_normal_{i:04d}_{tail}.wav")
             for d, n in (("source", 16), ("target", 3)) for i in range(n)]
    supplemental = [parse_clip_path(root / "supplemental" / f"section_00_{kind}_{i:04d}_.wav")
                    for kind in ("machine", "noise") for i in range(6)]
    train += as_training_clips(supplemental, SupplementalSettings(use="train"))  # the 6 machine clips
    test = [parse_clip_path(root / "test" / f"section_00_{d}_test_{label}_{i:04d}_{tail}.wav")
            for d in ("source", "target") for label in ("normal", "anomaly") for i in range(6)]
    assert dict(test[0].attributes)["noise"] == "1" and len(train) == 16 + 3 + 6
    rng = np.random.default_rng(0)
    scores = np.r_[rng.gamma(4.0, 0.1, size=len(train)),
                   [rng.gamma(4.0, 0.1) + (0.5 if c.label == "anomaly" else 0.0) for c in test]]
    table = ScoreTable("knn", train + test, scores)
    write_submission_of(table, tmp_path / "submission", 0.9, thresholds_path=tmp_path / "thresholds" / "knn.csv")
    thresholds = read_thresholds(tmp_path / "thresholds" / "knn.csv")
    assert set(thresholds) == {("ToyCar", 0, "source"), ("ToyCar", 0, "target")}
    train_scores = scores[: len(train)]
    source = np.array([c.domain == "source" for c in train])
    # 16 + 6 = 22 source rows (>= 20): a threshold of their own; the 3 target rows share the pooled one
    assert thresholds[("ToyCar", 0, "source")] == pytest.approx(gamma_threshold(train_scores[source], 0.9), rel=1e-9)
    assert thresholds[("ToyCar", 0, "target")] == pytest.approx(gamma_threshold(train_scores, 0.9), rel=1e-9)
    assert thresholds[("ToyCar", 0, "source")] != pytest.approx(thresholds[("ToyCar", 0, "target")], rel=1e-6)
    decisions = decisions_from_thresholds(table, thresholds)
    assert read_submission_dir(tmp_path / "submission").decisions == decisions
    res = evaluate_scores(table, protocol="dcase2025", decisions=decisions)
    for row in res.rows:
        unit = [(c, s) for c, s in zip(test, scores[len(train):]) if c.domain == row.domain]
        tp = sum(c.label == "anomaly" and s > thresholds[("ToyCar", 0, row.domain)] for c, s in unit)
        fp = sum(c.label == "normal" and s > thresholds[("ToyCar", 0, row.domain)] for c, s in unit)
        precision, recall = tp / max(tp + fp, 1), tp / 6
        assert row.recall == pytest.approx(recall) and row.precision == pytest.approx(precision)
        assert row.pauc_domain is not None
