"""Weight tuning, leave-one-section-out estimates, the weights YAML and the fuse stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybrid_asd.config import load_config
from hybrid_asd.data.clips import Clip
from hybrid_asd.ensemble.fusion import fuse
from hybrid_asd.ensemble.stage import load_weights, read_score_tables, run_fuse
from hybrid_asd.ensemble.tune import Evaluator, simplex_grid, tune_weights, values_by_section
from hybrid_asd.errors import ConfigError, ScoreError
from hybrid_asd.evaluation.metrics import evaluate_scores, harmonic_mean
from hybrid_asd.scores import ScoreTable


def make_tables(
    separations: dict[str, float],
    machines: tuple[str, ...] = ("fan",),
    sections: tuple[int, ...] = (0, 1, 2, 3),
    n_test: int = 20,
    seed: int = 0,
) -> list[ScoreTable]:
    """One table per detector; a detector's anomalies are shifted by its separation (0: pure noise)."""
    rng = np.random.default_rng(seed)
    clips: list[Clip] = []
    for machine in machines:
        for section in sections:
            for domain, n_train in (("source", 40), ("target", 3)):
                clips += [Clip(Path(f"/d/{machine}/train/{domain}_s{section}_{i}.wav"), machine, section, domain,
                               "train", "normal") for i in range(n_train)]
                for label in ("normal", "anomaly"):
                    clips += [Clip(Path(f"/d/{machine}/test/{domain}_s{section}_{label}_{i}.wav"), machine, section,
                                   domain, "test", label) for i in range(n_test)]
    anomalous = np.array([c.is_anomaly for c in clips])
    tables = []
    for det, sep in separations.items():
        scale = rng.uniform(0.5, 3.0)  # detectors on different scales: z-normalisation must handle it
        scores = scale * (rng.normal(size=len(clips)) + sep * anomalous) + rng.uniform(-5, 5)
        tables.append(ScoreTable(det, clips, scores, f"exp/scores/{det}.csv"))
    return tables


def test_simplex_grid():
    grid = simplex_grid(3, 0.5)
    assert sorted(map(tuple, grid)) == sorted(
        [(0, 0, 1), (0, 0.5, 0.5), (0, 1, 0), (0.5, 0, 0.5), (0.5, 0.5, 0), (1, 0, 0)]
    )
    assert len(simplex_grid(4, 0.1)) == 286
    with pytest.raises(ConfigError, match="integer"):
        simplex_grid(2, 0.3)


def test_section_values_reproduce_official_score():
    tables = make_tables({"a": 1.0}, machines=("fan", "pump"), sections=(0, 1))
    for protocol in ("dcase2021", "dcase2022"):
        ev = Evaluator(tables[0].clips, protocol)
        res = ev.results(tables[0].scores)
        values = values_by_section(res)
        assert set(values) == {("fan", 0), ("fan", 1), ("pump", 0), ("pump", 1)}
        assert harmonic_mean([v for vs in values.values() for v in vs]) == pytest.approx(res.official_score, abs=1e-12)
        assert res.official_score == pytest.approx(evaluate_scores(tables[0], protocol).official_score, abs=1e-12)


def test_grid_tuning_gives_noise_no_weight_and_reports_loso():
    tables = make_tables({"good": 1.2, "noise": 0.0})
    result = tune_weights(tables, grid_step=0.1)
    assert result.method == "grid" and result.n_candidates == 11
    assert result.weights["noise"] <= 0.1 < result.weights["good"]
    assert result.score >= result.single_scores["good"] - 1e-12
    assert result.score > result.equal_weight_score
    assert result.single_scores["good"] > 0.7 and abs(result.single_scores["noise"] - 0.5) < 0.12
    # LOSO: one fold per labelled section, each tuned without it
    assert [(f.machine, f.section) for f in result.loso] == [("fan", s) for s in range(4)]
    for fold in result.loso:
        assert fold.weights["noise"] <= 0.2
    assert result.loso_score is not None and result.loso_in_sample_score is not None
    # fold 0 = tuning on sections 1-3 only, then scoring section 0 with those weights
    def only(sections):
        return [ScoreTable(t.detector, [c for c in t.clips if c.section in sections],
                           t.scores[[c.section in sections for c in t.clips]]) for t in tables]

    fold = result.loso[0]
    assert tune_weights(only({1, 2, 3}), grid_step=0.1, loso=False).weights == fold.weights
    held = evaluate_scores(fuse(only({0}), weights=fold.weights)).official_score
    assert fold.held_out_score == pytest.approx(held, abs=1e-12)
    in_sample = evaluate_scores(fuse(only({0}), weights=result.weights)).official_score
    assert fold.in_sample_score == pytest.approx(in_sample, abs=1e-12)
    report = result.format()
    assert "leave-one-section-out" in report and "optimism" in report and "good" in report


def test_grid_in_sample_score_matches_fuse_with_tuned_weights():
    tables = make_tables({"a": 0.8, "b": 0.8, "noise": 0.0}, sections=(0, 1), seed=1)
    result = tune_weights(tables, grid_step=0.25, loso=False)
    assert result.weights["noise"] == 0.0
    fused = fuse(tables, weights=result.weights)
    assert evaluate_scores(fused).official_score == pytest.approx(result.score, abs=1e-12)
    assert result.loso == [] and "LOSO disabled" in result.skipped_folds


def test_per_machine_tuning():
    # detector "a" informative for fan only, "b" for pump only
    fan = make_tables({"a": 1.5, "b": 0.0}, machines=("fan",), sections=(0, 1), seed=2)
    pump = make_tables({"a": 0.0, "b": 1.5}, machines=("pump",), sections=(0, 1), seed=3)
    tables = [ScoreTable.concat([f, p]) for f, p in zip(fan, pump)]
    result = tune_weights(tables, grid_step=0.2, per_machine=True)
    assert result.weights["fan"]["a"] >= 0.8 and result.weights["pump"]["b"] >= 0.8
    assert len(result.loso) == 4 and all(f.weights["a" if f.machine == "fan" else "b"] >= 0.8 for f in result.loso)
    shared = tune_weights(tables, grid_step=0.2, loso=False)
    assert result.score > shared.score


def test_optimiser_for_many_detectors():
    seps = {"good": 2.0, "n1": 0.0, "n2": 0.0, "n3": 0.0, "n4": 0.0}
    tables = make_tables(seps, sections=(0,), seed=4)
    result = tune_weights(tables, loso=False, maxiter=2, popsize=2, seed=0)
    assert result.method == "optimiser"
    assert sum(result.weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.score >= result.equal_weight_score
    assert result.weights["good"] > max(result.weights[d] for d in ("n1", "n2", "n3", "n4"))
    again = tune_weights(tables, loso=False, maxiter=2, popsize=2, seed=0)
    assert again.weights == result.weights  # seeded


def test_tuning_needs_labelled_clips():
    tables = make_tables({"a": 1.0}, sections=(0,))
    unlabelled = [ScoreTable(t.detector, [c.with_label("unknown") if c.split == "test" else c for c in t.clips],
                             t.scores) for t in tables]
    with pytest.raises(ScoreError, match="no labelled test clips"):
        tune_weights(unlabelled)


@pytest.mark.parametrize("per_machine", [False, True])
def test_weights_yaml_round_trip_through_load_config(tmp_path, per_machine):
    fan = make_tables({"knn": 1.0, "oe": 0.5}, machines=("fan",), sections=(0,), seed=5)
    pump = make_tables({"knn": 0.5, "oe": 1.0}, machines=("pump",), sections=(0,), seed=6)
    tables = [ScoreTable.concat([f, p]) for f, p in zip(fan, pump)]
    result = tune_weights(tables, grid_step=0.25, per_machine=per_machine, loso=False)
    path = tmp_path / "weights.yaml"
    result.to_yaml(path)
    assert path.read_text().startswith("# Weights tuned")
    config = load_config(path, overrides=["seed=3", "detectors=[{name: knn}]"])  # members must exist
    assert config.ensemble.weights == result.weights
    assert config.ensemble.rule == "weighted_sum"
    assert config.ensemble.members == ["knn", "oe"]
    # fusing with the weights read back reproduces the tuned score
    ens = config.ensemble
    fused = fuse(tables, rule=ens.rule, weights=ens.weights, normalise=ens.normalise, per_domain=ens.per_domain)
    assert evaluate_scores(fused).official_score == pytest.approx(result.score, abs=1e-9)


# --- the fuse stage ---------------------------------------------------------------------------
def write_experiment(root: Path, tables: list[ScoreTable]) -> list[Path]:
    paths = []
    for t in tables:
        path = root / "scores" / f"{t.detector}.csv"
        t.to_csv(path)
        paths.append(path)
    return paths


def test_run_fuse_two_experiments_with_tuning(tmp_path):
    fan = make_tables({"knn": 1.2, "oe": 0.0}, machines=("fan",), sections=(0, 1), seed=7)
    pump = make_tables({"knn": 1.2, "oe": 0.0}, machines=("pump",), sections=(0, 1), seed=8)
    paths = write_experiment(tmp_path / "exp_fan", fan) + write_experiment(tmp_path / "exp_pump", pump)
    tables = read_score_tables(paths)
    assert [t.detector for t in tables] == ["knn", "oe"] and len(tables[0]) == 2 * len(fan[0])
    assert "exp_fan/scores/oe.csv" in tables[1].source and "exp_pump/scores/oe.csv" in tables[1].source

    out = tmp_path / "fused"
    result = run_fuse(paths, out, tune=True, thresholds_quantile=0.9, grid_step=0.25)
    assert result["weights_used"]["oe"] <= 0.25
    fused = ScoreTable.from_csv(out / "fused.csv")
    assert len(fused) == len(tables[0]) and {c.machine for c in fused.clips} == {"fan", "pump"}
    assert (out / "tuning.txt").read_text().startswith("weight tuning")
    assert load_weights(out / "weights.yaml", None)[1] == result["weights_used"]
    names = sorted(p.name for p in (out / "submission").iterdir())
    assert "anomaly_score_fan_section_00_source_test.csv" in names
    assert "decision_result_pump_section_01_target_test.csv" in names
    assert len(names) == 2 * 2 * 2 * 2  # machines x sections x domains x (score, decision)
    assert result["official_score"] == pytest.approx(result["tune_result"].score, abs=1e-9)
    assert "leave-one-section-out" in result["report"]

    # given weights, no tuning: weights.yaml records them
    out2 = tmp_path / "fused_given"
    res2 = run_fuse(paths, out2, rule="rank_mean", weights={"knn": 2.0})
    assert load_weights(out2 / "weights.yaml", None) == ("rank_mean", {"knn": 2.0}) and res2["tuning"] is None
    assert not (out2 / "tuning.txt").exists()


def test_run_fuse_mismatched_experiment_names_file(tmp_path):
    fan = make_tables({"knn": 1.0, "oe": 1.0}, machines=("fan",), sections=(0,), seed=9)
    short = ScoreTable("oe", fan[1].clips[:-1], fan[1].scores[:-1])
    paths = write_experiment(tmp_path / "exp", [fan[0], short])
    with pytest.raises(ScoreError, match=r"detector 'oe' \(.*exp/scores/oe.csv\): clip list differs"):
        run_fuse(paths, tmp_path / "out")
    with pytest.raises(ScoreError, match=r"names detector\(s\) \['gmm'\]"):
        run_fuse(paths[:1], tmp_path / "out", weights={"gmm": 1.0})


def test_oe_znorm_uses_held_out_validation_clips(tmp_path):
    """OE train rows are in-sample except the extractor's validation clips: statistics use those."""
    torch = pytest.importorskip("torch")
    knn, oe = make_tables({"knn": 1.0, "oe": 1.0}, sections=(0, 1), seed=10)
    train_idx = [i for i, c in enumerate(oe.clips) if c.split == "train" and c.domain == "source"]
    val = {str(oe.clips[i].path) for i in train_idx[::4]}  # every 4th source train clip held out
    scores = oe.scores.copy()
    for i in train_idx:
        if str(oe.clips[i].path) not in val:
            scores[i] -= 3.0  # in-sample rows: biased low
    oe = ScoreTable("oe", oe.clips, scores)
    paths = write_experiment(tmp_path / "exp", [knn, oe])
    (tmp_path / "exp" / "extractor").mkdir()
    torch.save({"model": {}, "config": {}, "meta": {"val_paths": sorted(val)}},
               tmp_path / "exp" / "extractor" / "checkpoint.pt")

    from hybrid_asd.ensemble.stage import discover_references

    refs = discover_references(paths)
    assert refs == {"oe": val}
    result = run_fuse(paths, tmp_path / "out", weights={"knn": 0.0, "oe": 1.0})
    fused = ScoreTable.from_csv(result["fused"])
    for section in (0, 1):
        held = [i for i, c in enumerate(oe.clips) if str(c.path) in val and c.section == section]
        ref = oe.scores[held]
        rows = [i for i, c in enumerate(oe.clips) if c.section == section]
        np.testing.assert_allclose(fused.scores[rows], (oe.scores[rows] - ref.mean()) / ref.std(ddof=1))
    # without references (in-sample rows included) the statistics differ
    plain = fuse([knn, oe], weights={"knn": 0.0})
    assert not np.allclose(plain.scores, fused.scores)


def test_fit_znorm_reference_falls_back_per_section():
    from hybrid_asd.ensemble.znorm import fit_znorm

    (table,) = make_tables({"a": 1.0}, sections=(0, 1), seed=11)
    s0 = [str(c.path) for c in table.clips if c.split == "train" and c.section == 0][:5]
    s1 = [str(c.path) for c in table.clips if c.split == "train" and c.section == 1][:1]  # too few
    z = fit_znorm(table, reference=s0 + s1)
    ref0 = table.scores[[str(c.path) in s0 for c in table.clips]]
    assert z.section_stats[("fan", 0)].mean == pytest.approx(ref0.mean()) and z.section_stats[("fan", 0)].n == 5
    all1 = table.select(split="train", section=1).scores
    assert z.section_stats[("fan", 1)].n == len(all1) and z.section_stats[("fan", 1)].mean == pytest.approx(all1.mean())


def test_fit_znorm_reference_that_scores_identically_falls_back_to_all_rows(caplog):
    """Two held-out clips that are each other's nearest neighbour get the same kNN score: a reference without
    spread uses the section's train rows instead (the quick demo on tiny data hit this); a detector whose train
    rows are all constant still stops with the zero-spread error."""
    from hybrid_asd.ensemble.znorm import fit_znorm

    (table,) = make_tables({"a": 1.0}, sections=(0, 1), seed=12)
    train0 = [i for i, c in enumerate(table.clips) if c.split == "train" and c.section == 0]
    train1 = [i for i, c in enumerate(table.clips) if c.split == "train" and c.section == 1]
    scores = table.scores.copy()
    scores[train0[:2]] = 0.25  # the two reference clips of section 0 tie
    table = ScoreTable(table.detector, table.clips, scores)
    reference = [str(table.clips[i].path) for i in train0[:2] + train1[:3]]
    with caplog.at_level("WARNING", logger="hybrid_asd.ensemble.znorm"):
        z = fit_znorm(table, reference=reference)
    assert "section_00: its 2 held-out reference clips score identically" in caplog.text
    all0 = scores[train0]
    assert z.section_stats[("fan", 0)].n == len(all0)
    assert z.section_stats[("fan", 0)].std == pytest.approx(all0.std(ddof=1))
    assert z.section_stats[("fan", 1)].n == 3  # section 1 keeps its reference
    scores[train0] = 0.25  # every train row of section 0 constant: nothing to fall back to
    with pytest.raises(ScoreError, match="zero spread"):
        fit_znorm(ScoreTable(table.detector, table.clips, scores), reference=reference)
