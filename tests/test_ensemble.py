"""Z-normalisation and fusion rules of hybrid_asd.ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hybrid_asd.data.clips import Clip
from hybrid_asd.ensemble.fusion import RULES, align_tables, fuse
from hybrid_asd.ensemble.znorm import ZNorm, fit_znorm
from hybrid_asd.errors import ConfigError, ScoreError
from hybrid_asd.scores import ScoreTable


def clip(i: int, machine: str = "fan", section: int = 0, domain: str = "source", split: str = "test",
         label: str = "normal") -> Clip:
    return Clip(Path(f"/d/{machine}/{split}/{domain}_{section:02d}_{i:04d}.wav"), machine, section, domain, split, label)


def six_clip_tables() -> tuple[ScoreTable, ScoreTable]:
    clips = [clip(i) for i in range(6)]
    a = ScoreTable("a", clips, np.array([1, 2, 3, 4, 5, 6.0]), "scores/a.csv")
    b = ScoreTable("b", clips, np.array([6, 1, 5, 2, 4, 3.0]), "scores/b.csv")
    return a, b


# --- z-normalisation ---------------------------------------------------------------------------
def train_test_table(rng: np.random.Generator, detector: str = "knn") -> ScoreTable:
    """Two machines x two sections; per group a different mean/scale; 3 target train clips."""
    clips, scores = [], []
    for m_i, machine in enumerate(("fan", "pump")):
        for section in (0, 1):
            loc, scale = 10.0 * m_i + 3 * section, 1.0 + section + m_i
            for domain, n_train in (("source", 200), ("target", 3)):
                shift = 5.0 if domain == "target" else 0.0
                for i in range(n_train):
                    clips.append(clip(i, machine, section, domain, "train"))
                    scores.append(rng.normal(loc + shift, scale))
                for i in range(20):
                    clips.append(clip(i, machine, section, domain, "test", "anomaly" if i % 2 else "normal"))
                    scores.append(rng.normal(loc + shift + (i % 2), scale))
    return ScoreTable(detector, clips, np.array(scores), f"exp/scores/{detector}.csv")


def test_znorm_gives_zero_mean_unit_variance_on_normal_train_scores():
    table = train_test_table(np.random.default_rng(0))
    znorm = fit_znorm(table)
    out = znorm.apply(table)
    for machine in ("fan", "pump"):
        for section in (0, 1):
            z = out.select(split="train", machine=machine, section=section).scores
            assert abs(z.mean()) < 1e-12
            assert z.std(ddof=1) == pytest.approx(1.0, abs=1e-12)
    # test rows use the same statistics
    raw = table.select(machine="pump", section=1)
    st = znorm.section_stats[("pump", 1)]
    np.testing.assert_allclose(out.select(machine="pump", section=1).scores, (raw.scores - st.mean) / st.std)


def test_znorm_per_domain_source_is_exact_and_target_std_shrinks_towards_section():
    table = train_test_table(np.random.default_rng(1))
    znorm = fit_znorm(table, per_domain=True, min_clips=10)
    out = znorm.apply(table)
    src = out.select(split="train", machine="fan", section=0, domain="source").scores
    assert abs(src.mean()) < 1e-12 and src.std(ddof=1) == pytest.approx(1.0)
    tgt_raw = table.select(split="train", machine="fan", section=0, domain="target").scores
    tgt = znorm.domain_stats[("fan", 0, "target")]
    sec = znorm.section_stats[("fan", 0)]
    assert tgt.n == 3 and tgt.mean == pytest.approx(tgt_raw.mean())
    expected_var = (2 * tgt_raw.var(ddof=1) + 10 * sec.std**2) / (2 + 10)
    assert tgt.std == pytest.approx(np.sqrt(expected_var))
    # target train scores are centred by their own mean
    assert abs(out.select(split="train", machine="fan", section=0, domain="target").scores.mean()) < 1e-12


def test_znorm_dict_round_trip():
    table = train_test_table(np.random.default_rng(2))
    znorm = fit_znorm(table, per_domain=True)
    back = ZNorm.from_dict(json.loads(json.dumps(znorm.to_dict())))
    np.testing.assert_array_equal(back.apply(table).scores, znorm.apply(table).scores)
    assert back.to_dict() == znorm.to_dict()


def test_znorm_errors_name_detector_and_file():
    clips = [clip(i, split="train") for i in range(5)] + [clip(0, section=3)]
    constant = ScoreTable("gmm", clips, np.array([2.0] * 5 + [1.0]), "exp/scores/gmm.csv")
    with pytest.raises(ScoreError, match=r"'gmm'.*exp/scores/gmm.csv.*zero spread"):
        fit_znorm(constant)
    ok = ScoreTable("gmm", clips, np.arange(6.0), "exp/scores/gmm.csv")
    with pytest.raises(ScoreError, match=r"'gmm'.*exp/scores/gmm.csv.*fan section_03"):
        fit_znorm(ok).apply(ok)
    no_train = ScoreTable("oe", [clip(i) for i in range(3)], np.arange(3.0), "exp/scores/oe.csv")
    with pytest.raises(ScoreError, match=r"'oe'.*exp/scores/oe.csv.*no split=train"):
        fit_znorm(no_train)


# --- fusion rules on a 6-clip example ---------------------------------------------------------
@pytest.mark.parametrize(
    "rule, expected",
    [
        ("weighted_sum", [8, 5, 11, 10, 14, 15]),  # 2a + b
        ("max", [6, 4, 6, 8, 10, 12]),  # max(2a, b)
        ("min", [2, 1, 5, 2, 4, 3]),  # min(2a, b)
        # ranks in [0, 1]: a -> 0,.2,.4,.6,.8,1; b -> 1,0,.8,.2,.6,.4; (2 ra + rb) / 3
        ("rank_mean", [1 / 3, 0.4 / 3, 1.6 / 3, 1.4 / 3, 2.2 / 3, 2.4 / 3]),
    ],
)
def test_fusion_rules_match_hand_computation(rule, expected):
    a, b = six_clip_tables()
    fused = fuse([a, b], rule=rule, weights={"a": 2.0}, normalise="none")
    assert fused.detector == "fused"
    assert [c.path for c in fused.clips] == [c.path for c in a.clips]
    np.testing.assert_allclose(fused.scores, expected)


def test_rules_registry_names():
    assert set(RULES.names()) == {"weighted_sum", "max", "min", "rank_mean"}
    a, b = six_clip_tables()
    with pytest.raises(ConfigError, match="unknown fusion rule 'mean'"):
        fuse([a, b], rule="mean", normalise="none")


def test_zero_weight_drops_detector_from_max():
    a, b = six_clip_tables()
    fused = fuse([a, b], rule="max", weights={"b": 0.0}, normalise="none")
    np.testing.assert_allclose(fused.scores, a.scores)


def test_per_machine_weights_and_alignment_by_path():
    clips = [clip(i, "fan") for i in range(3)] + [clip(i, "pump") for i in range(3)]
    a = ScoreTable("a", clips, np.array([1, 2, 3, 4, 5, 6.0]))
    # b in a different row order: alignment must go by path
    order = [5, 4, 3, 2, 1, 0]
    b = ScoreTable("b", [clips[i] for i in order], np.array([10, 20, 30, 40, 50, 60.0])[order])
    weights = {"fan": {"a": 1.0, "b": 0.0}, "pump": {"b": 0.5}}  # pump: a gets the default 1.0
    fused = fuse([a, b], weights=weights, normalise="none")
    np.testing.assert_allclose(fused.scores, [1, 2, 3, 4 + 20, 5 + 25, 6 + 30])
    with pytest.raises(ConfigError, match=r"no weights for machine type\(s\) \['pump'\]"):
        fuse([a, b], weights={"fan": {"a": 1.0}}, normalise="none")


def test_fuse_with_znorm_uses_each_detectors_train_statistics():
    rng = np.random.default_rng(3)
    t1 = train_test_table(rng, "knn")
    t2 = ScoreTable("oe", t1.clips, 100 + 7 * t1.scores, "exp/scores/oe.csv")  # affine copy
    fused = fuse([t1, t2], weights={"knn": 0.5, "oe": 0.5})
    np.testing.assert_allclose(fused.scores, fit_znorm(t1).apply(t1).scores, atol=1e-9)


# --- input errors -----------------------------------------------------------------------------
def test_mismatched_clip_lists_name_detector_and_file():
    a, b = six_clip_tables()
    short = ScoreTable("b", b.clips[:5], b.scores[:5], "exp2/scores/b.csv")
    with pytest.raises(ScoreError, match=r"detector 'b' \(exp2/scores/b.csv\): clip list differs: lacks 1"):
        align_tables([a, short])
    other = ScoreTable("b", b.clips[:5] + [clip(99)], b.scores, "exp2/scores/b.csv")
    with pytest.raises(ScoreError, match=r"exp2/scores/b.csv.*has 1 clip\(s\) that detector 'a'"):
        fuse([a, other], normalise="none")


def test_missing_detector_in_weights_is_named():
    a, b = six_clip_tables()
    with pytest.raises(ScoreError, match=r"names detector\(s\) \['flow'\].*scores/a.csv.*scores/b.csv"):
        fuse([a, b], weights={"flow": 1.0}, normalise="none")


def test_nan_scores_name_detector_and_file():
    a, b = six_clip_tables()
    bad = ScoreTable("b", b.clips, np.array([1, np.nan, 3, 4, 5, 6]), "exp/scores/b.csv")
    with pytest.raises(ScoreError, match=r"'b' in exp/scores/b.csv: 1 non-finite"):
        fuse([a, bad], normalise="none")


def test_csv_nan_is_named(tmp_path):
    a, _ = six_clip_tables()
    a.to_csv(tmp_path / "a.csv")
    text = (tmp_path / "a.csv").read_text().splitlines()
    text[3] = ",".join(text[3].split(",")[:-1] + ["nan"])
    (tmp_path / "knn.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(ScoreError, match=r"knn.csv row 4.*'knn'"):
        ScoreTable.from_csv(tmp_path / "knn.csv")


def test_bad_weights_are_config_errors():
    a, b = six_clip_tables()
    with pytest.raises(ConfigError, match=">= 0"):
        fuse([a, b], weights={"a": -1.0}, normalise="none")
    with pytest.raises(ConfigError, match="at least one weight"):
        fuse([a, b], weights={"a": 0.0, "b": 0.0}, normalise="none")
    with pytest.raises(ConfigError, match="mixes"):
        fuse([a, b], weights={"a": 1.0, "fan": {"b": 1.0}}, normalise="none")
