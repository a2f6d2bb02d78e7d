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
