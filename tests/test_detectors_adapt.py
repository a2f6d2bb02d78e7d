"""Domain adaptation wrapper: source/target models, domain-min fusion, SMOTE, cross-fitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sklearn.metrics import roc_auc_score

from hybrid_asd.detectors import DomainAdaptiveDetector, build_detector, cross_fit_scores, load_detector
from hybrid_asd.detectors.adapt import assign_group_folds, smote_interpolate
from hybrid_asd.errors import ConfigError, DataError

torch.set_num_threads(1)
D = 8


@pytest.fixture(scope="module")
def domains_data():
    """300 source clips near 4*e0; 3 target clips of 5 frames each near 4*e1; outliers near 4*e2."""
    rng = np.random.default_rng(0)
    centre = np.eye(D) * 4.0
    source = centre[0] + 0.5 * rng.normal(size=(300, D))
    target = centre[1] + 0.5 * rng.normal(size=(15, D))
    X = np.r_[source, target]
    domains = np.array(["source"] * 300 + ["target"] * 15)
    groups = np.r_[np.arange(300), 1000 + np.repeat(np.arange(3), 5)]
    tests = {
        "source": centre[0] + 0.5 * rng.normal(size=(20, D)),
        "target": centre[1] + 0.5 * rng.normal(size=(20, D)),
        "anomaly": centre[2] + 0.5 * rng.normal(size=(20, D)),
    }
    return X, domains, groups, tests


CASES = [
    ("knn", {"k": 1}),
    ("mahalanobis", {}),
    ("gmm", {"covariance_type": "diag"}),
    ("flow", {"epochs": 5, "transforms": 1, "hidden_features": 16, "batch_size": 64, "device": "cpu"}),
]


def auc(normal, anomalous):
    return roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(anomalous))], np.r_[normal, anomalous])


@pytest.mark.parametrize("name,conf", CASES)
def test_target_inlier_scores_low_only_once_target_clips_are_given(name, conf, domains_data):
    X, domains, groups, tests = domains_data
    source_only = DomainAdaptiveDetector(name, conf, n_splits=2).fit(X[:300], domains[:300])
    adapted = DomainAdaptiveDetector(name, conf, smote=10, n_splits=2).fit(X, domains, groups=groups)
    assert set(adapted.models_) == {"source", "target"} and set(source_only.models_) == {"source"}
    before = {k: source_only.decision_function(v) for k, v in tests.items()}
    after = {k: adapted.decision_function(v) for k, v in tests.items()}
    # without its clips a target inlier scores above source inliers, like an anomaly ...
    assert auc(before["source"], before["target"]) > 0.95
    # ... with them it scores below the anomalies, and source inliers still do too
    assert auc(after["target"], after["anomaly"]) > max(0.95, auc(before["target"], before["anomaly"]))
    assert auc(after["source"], after["anomaly"]) > 0.95
    # decision_function is the minimum over the domains' normalised scores
    per_domain = adapted.score_domains(tests["target"])
    np.testing.assert_allclose(after["target"], np.minimum(per_domain["source"], per_domain["target"]))


def test_knn_k1_domain_min_equals_pooled_knn(domains_data):
    X, domains, groups, tests = domains_data
    q = np.r_[tests["source"], tests["target"], tests["anomaly"]]
    dmin = DomainAdaptiveDetector("knn", {"k": 1}).fit(X, domains, groups=groups)
    assert dmin.normalise_ == "none" and dmin.stats_ == {}
    pooled = DomainAdaptiveDetector("knn", {"k": 1}, mode="pooled").fit(X, domains)
    np.testing.assert_allclose(dmin.decision_function(q), pooled.decision_function(q), rtol=1e-6)
    np.testing.assert_allclose(pooled.decision_function(q), build_detector("knn", {"k": 1}).fit(X).decision_function(q))


def test_modes_none_and_pooled_fit_one_model(domains_data):
    X, domains, groups, tests = domains_data
    none = DomainAdaptiveDetector("mahalanobis", {}, mode="none").fit(X, domains)
    ref = build_detector("mahalanobis", {}).fit(X[domains == "source"])
    np.testing.assert_allclose(none.decision_function(tests["target"]), ref.decision_function(tests["target"]))
    pooled = DomainAdaptiveDetector("mahalanobis", {}, mode="pooled").fit(X, domains)
    assert list(pooled.models_) == ["pooled"]


def test_oof_normalisation_statistics(domains_data):
    """'oof' z-scores with held-out scores; with 3 target clips that is leave-one-clip-out."""
    X, domains, groups, _ = domains_data
    det = DomainAdaptiveDetector("mahalanobis", {}, n_splits=3).fit(X, domains, groups=groups)
    target = X[domains == "target"]
    tg = groups[domains == "target"]
    loo = np.empty(len(target))
    for g in np.unique(tg):
        m = build_detector("mahalanobis", {}).fit(target[tg != g])
        loo[tg == g] = m.decision_function(target[tg == g])
    np.testing.assert_allclose(det.stats_["target"], [loo.mean(), loo.std()], rtol=1e-10)
    train = DomainAdaptiveDetector("mahalanobis", {}, normalise="train").fit(X, domains, groups=groups)
    in_sample = train.models_["target"].decision_function(target)
    np.testing.assert_allclose(train.stats_["target"], [in_sample.mean(), in_sample.std()], rtol=1e-10)
    assert det.stats_["target"][0] > train.stats_["target"][0]  # held-out scores are higher


def test_wrapper_save_load_round_trip(domains_data, tmp_path):
    X, domains, groups, tests = domains_data
    det = DomainAdaptiveDetector("gmm", {"covariance_type": "diag"}, smote=5, seed=3).fit(X, domains, groups=groups)
    det.save(tmp_path / "w")
    loaded = load_detector(tmp_path / "w")
    assert isinstance(loaded, DomainAdaptiveDetector) and loaded.get_params() == det.get_params()
    for v in tests.values():
        np.testing.assert_array_equal(loaded.decision_function(v), det.decision_function(v))
    assert (tmp_path / "w" / "source" / "params.json").is_file()
    assert (tmp_path / "w" / "target" / "params.json").is_file()


def test_smote_points_lie_on_segments_between_target_points():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(3, 5))
    new, cond = smote_interpolate(pts, 40, seed=1)
    assert new.shape == (40, 5) and cond is None
    for p in new:
        on_segment = False
        for i in range(3):
            for j in range(3):
                if i == j:
                    continue
                seg = pts[j] - pts[i]
                u = np.dot(p - pts[i], seg) / np.dot(seg, seg)
                if -1e-9 <= u <= 1 + 1e-9 and np.allclose(pts[i] + u * seg, p, atol=1e-9):
                    on_segment = True
        assert on_segment
    np.testing.assert_array_equal(smote_interpolate(pts, 40, seed=1)[0], new)  # seeded
    # with conditions, pairs stay within a condition group
    cond_in = np.array([0, 0, 1, 1])
    pts4 = np.array([[0.0, 0], [1, 0], [10, 10], [11, 10]])
    new4, cond4 = smote_interpolate(pts4, 30, seed=2, condition=cond_in)
    assert np.all((cond4 == 0) == (new4[:, 0] <= 1)) and np.all(np.isin(new4[:, 1], [0, 10]))


def test_cross_fit_scores_are_out_of_fold(domains_data):
    X, domains, groups, _ = domains_data
    # duplicate every row: an in-fold kNN would score 0 for all of them
    X2, d2, g2 = np.r_[X, X], np.r_[domains, domains], np.r_[groups, groups]
    scores = cross_fit_scores("knn", {"k": 1}, X2, d2, g2, n_splits=3, seed=0)
    assert scores.shape == (len(X2),) and np.all(scores > 0)
    np.testing.assert_array_equal(scores[: len(X)], scores[len(X):])  # same clip, same fold
    folds = assign_group_folds(g2, 3, seed=0, strata=d2)
    assert len(np.unique(folds[d2 == "target"])) == 3  # the 3 target clips go to 3 folds
    for g in np.unique(g2):
        assert len(np.unique(folds[g2 == g])) == 1


def test_wrapper_errors(domains_data):
    X, domains, groups, tests = domains_data
    with pytest.raises(ConfigError, match="mode='both'"):
        DomainAdaptiveDetector("knn", {}, mode="both").fit(X, domains)
    with pytest.raises(ConfigError, match="unknown key"):
        DomainAdaptiveDetector("knn", {"kk": 1}).fit(X, domains)
    with pytest.raises(ConfigError, match="unknown detector"):
        DomainAdaptiveDetector("svm", {}).fit(X, domains)
    with pytest.raises(DataError, match="unknown domain label"):
        DomainAdaptiveDetector("knn", {}).fit(X, np.where(domains == "target", "tgt", domains))
    with pytest.raises(DataError, match="no source rows"):
        DomainAdaptiveDetector("knn", {}, mode="none").fit(X[300:], domains[300:])
    with pytest.raises(Exception, match="not fitted"):
        DomainAdaptiveDetector("knn", {}).decision_function(tests["source"])
    det = DomainAdaptiveDetector("knn", {}).fit(X, domains)
    with pytest.raises(DataError, match="non-finite"):
        det.decision_function(np.full((2, D), np.nan))


def test_wrapper_takes_many_rows_per_clip_with_a_neural_detector(domains_data, tmp_path):
    """AE on frames: rows of a clip stay together in the folds; 'train' is the cheap normalisation."""
    X, domains, groups, tests = domains_data
    conf = {"epochs": 2, "hidden_features": 8, "bottleneck": 2, "batch_size": 64, "device": "cpu"}
    det = DomainAdaptiveDetector("ae", conf, normalise="train", smote=4).fit(X, domains, groups=groups)
    assert set(det.stats_) == {"source", "target"}
    scores = det.decision_function(tests["target"])
    assert scores.shape == (20,) and np.isfinite(scores).all()
    det.save(tmp_path / "ae")
    np.testing.assert_array_equal(load_detector(tmp_path / "ae").decision_function(tests["target"]), scores)


@pytest.mark.parametrize("name,conf", CASES[1:3])  # the density models it is meant for
def test_mean_shift_reuses_the_source_model_moved_onto_the_target_mean(name, conf, domains_data):
    X, domains, groups, tests = domains_data
    det = DomainAdaptiveDetector(name, conf, mode="mean_shift").fit(X, domains, groups=groups)
    assert list(det.models_) == ["source"] and det.normalise_ == "none"
    shift = X[domains == "source"].mean(axis=0) - X[domains == "target"].mean(axis=0)
    np.testing.assert_allclose(det.shifts_["all"], shift)
    source_model = build_detector(name, conf).fit(X[domains == "source"])
    q = np.r_[tests["source"], tests["target"], tests["anomaly"]]
    expected = np.minimum(source_model.decision_function(q), source_model.decision_function(q + shift))
    np.testing.assert_allclose(det.decision_function(q), expected, rtol=1e-6)
    after = {k: det.decision_function(v) for k, v in tests.items()}
    assert auc(after["target"], after["anomaly"]) > 0.95 and auc(after["source"], after["anomaly"]) > 0.95


def test_mean_shift_per_condition_and_round_trip(domains_data, tmp_path):
    """One conditional model for two sections: each section gets its own shift; a section without
    target clips keeps the source score."""
    X, domains, groups, tests = domains_data
    cond = np.r_[np.zeros(150, int), np.ones(150, int), np.zeros(15, int)]  # section 1 has no target rows
    det = DomainAdaptiveDetector("mahalanobis", {}, mode="mean_shift").fit(X, domains, condition=cond)
    assert set(det.shifts_) == {"0"}
    np.testing.assert_allclose(det.shifts_["0"], X[:150].mean(axis=0) - X[300:].mean(axis=0))
    q = tests["target"]
    in_section_1 = det.score_domains(q, condition=np.ones(len(q), int))
    np.testing.assert_array_equal(in_section_1["target"], in_section_1["source"])
    det.save(tmp_path / "ms")
    loaded = load_detector(tmp_path / "ms")
    for c in (0, 1):
        qc = np.full(len(q), c)
        np.testing.assert_array_equal(loaded.decision_function(q, qc), det.decision_function(q, qc))
    no_target = DomainAdaptiveDetector("mahalanobis", {}, mode="mean_shift").fit(X[:300], domains[:300])
    assert no_target.shifts_ == {} and set(no_target.score_domains(q)) == {"source"}


def test_standardised_input_finds_an_anomaly_in_a_small_scale_feature(tmp_path):
    """Log-mel statistics mix features whose scales differ by orders of magnitude: raw, a kNN sees only
    the large one; standardised with the training rows' statistics, the anomaly in the small one shows.
    The statistics are saved with the detector and a corrupt file is named."""
    rng = np.random.default_rng(5)
    train = np.c_[100.0 * rng.normal(size=(200, 1)), 0.01 * rng.normal(size=(200, 1))]
    normal = np.c_[100.0 * rng.normal(size=(30, 1)), 0.01 * rng.normal(size=(30, 1))]
    anomalous = np.c_[100.0 * rng.normal(size=(30, 1)), 0.05 + 0.01 * rng.normal(size=(30, 1))]
    domains = np.array(["source"] * 200)
    raw = DomainAdaptiveDetector("knn", {"k": 1, "metric": "l2"}).fit(train, domains)
    standardised = DomainAdaptiveDetector("knn", {"k": 1, "metric": "l2"}, standardise=True).fit(train, domains)
    assert auc(raw.decision_function(normal), raw.decision_function(anomalous)) < 0.7
    assert auc(standardised.decision_function(normal), standardised.decision_function(anomalous)) > 0.95
    np.testing.assert_allclose(standardised.input_mean_, train.mean(axis=0))
    standardised.save(tmp_path / "det")
    loaded = DomainAdaptiveDetector.load(tmp_path / "det")
    np.testing.assert_array_equal(loaded.decision_function(anomalous), standardised.decision_function(anomalous))
    (tmp_path / "det" / "input_scale.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="input_scale.npy"):
        DomainAdaptiveDetector.load(tmp_path / "det")


def test_logmel_statistics_are_standardised_by_default():
    from hybrid_asd.detectors.settings import DetectorEntry

    assert DetectorEntry(name="knn", input="logmel_stats").standardise_input
    assert not DetectorEntry(name="knn", input="embedding").standardise_input
    assert not DetectorEntry(name="knn", input="logmel_frames").standardise_input
    assert not DetectorEntry(name="knn", input="logmel_stats", standardise=False).standardise_input
