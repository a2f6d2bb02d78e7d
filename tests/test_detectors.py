"""Detector contract (every registered detector) and per-detector checks against references."""

from __future__ import annotations

import importlib.util
import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from hybrid_asd.detectors import DETECTORS, Detector, DomainAdaptiveDetector, NotFittedError, build_detector, load_detector
from hybrid_asd.detectors import knn as knn_module
from hybrid_asd.detectors.knn import FAISS_MISSING, import_faiss
from hybrid_asd.errors import ConfigError, DataError, HybridASDError

torch.set_num_threads(1)

N_FEATURES = 10  # 5 frames x 2 "mels" so the IDNN can split the rows too
TINY_TORCH = {"epochs": 3, "hidden_features": 16, "batch_size": 32, "seed": 0, "device": "cpu"}
TINY_CONF = {
    "knn": {"k": 3},
    "gmm": {"n_components": 2},
    "mahalanobis": {},
    "flow": {**TINY_TORCH, "transforms": 2},
    "ae": {**TINY_TORCH, "bottleneck": 4, "lr": 1e-2},
    "idnn": {**TINY_TORCH, "bottleneck": 4, "lr": 1e-2, "n_frames": 5},
}


@pytest.fixture(scope="module")
def data():
    """200 Gaussian inliers around +3 (training), 50 more for testing, 10 planted outliers around -3."""
    rng = np.random.default_rng(0)
    mu = np.full(N_FEATURES, 3.0)
    train = mu + rng.normal(size=(200, N_FEATURES))
    inliers = mu + rng.normal(size=(50, N_FEATURES))
    outliers = -mu + 0.5 * rng.normal(size=(10, N_FEATURES))
    return train, inliers, outliers


def test_every_registered_detector_has_a_tiny_conf():
    missing = sorted(set(DETECTORS.names()) - set(TINY_CONF))
    assert not missing, f"add a tiny conf to TINY_CONF so the contract test covers {missing}"
    assert {"knn", "gmm", "mahalanobis", "flow", "ae", "idnn"} <= set(DETECTORS.names())


@pytest.mark.parametrize("name", DETECTORS.names())
def test_detector_contract(name, data, tmp_path):
    train, inliers, outliers = data
    if name not in TINY_CONF:
        pytest.fail(f"detector {name!r} is registered but has no tiny conf in TINY_CONF")
    det = build_detector(name, TINY_CONF[name])
    assert isinstance(det, Detector)
    assert det.get_params() == {**det.get_params(), **TINY_CONF[name]}

    with pytest.raises(NotFittedError, match="not fitted"):
        det.decision_function(inliers)
    assert issubclass(NotFittedError, HybridASDError)

    assert det.fit(train) is det
    s_in, s_out = det.decision_function(inliers), det.decision_function(outliers)
    assert s_in.shape == (50,) and s_out.shape == (10,)
    assert s_in.dtype == np.float64 and np.isfinite(s_in).all()
    assert s_out.mean() > s_in.mean()
    labels = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    assert roc_auc_score(labels, np.r_[s_in, s_out]) > 0.9

    det.save(tmp_path / name)
    loaded = load_detector(tmp_path / name)
    assert type(loaded) is type(det)
    assert loaded.get_params() == det.get_params()
    np.testing.assert_array_equal(loaded.decision_function(inliers), s_in)
    np.testing.assert_array_equal(Detector.load(tmp_path / name).decision_function(outliers), s_out)

    bad = inliers.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match=rf"{name}.*non-finite.*row 3"):
        det.decision_function(bad)
    with pytest.raises(DataError, match=rf"{name}.*non-finite"):
        build_detector(name, TINY_CONF[name]).fit(np.where(np.arange(200)[:, None] == 7, np.inf, train))
    with pytest.raises(DataError, match=rf"{name}.*2-D"):
        det.decision_function(inliers[0])
    with pytest.raises(DataError, match=rf"{name}.*4 features.*fitted on {N_FEATURES}"):
        det.decision_function(inliers[:, :4])
    assert isinstance(DataError("x"), ValueError)


def test_unknown_name_key_and_bad_value_raise_config_error():
    with pytest.raises(ConfigError, match="unknown detector 'nope'"):
        build_detector("nope", {})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['kk'\]"):
        build_detector("knn", {"kk": 3})
    with pytest.raises(ConfigError, match="metric='manhattan'"):
        build_detector("knn", {"metric": "manhattan"})
    with pytest.raises(ConfigError, match="covariance_type"):
        build_detector("gmm", {"covariance_type": "weird"})
    with pytest.raises(ConfigError, match="library='pyro'"):
        build_detector("flow", {"library": "pyro"})


def test_build_detector_passes_seed_unless_conf_sets_it():
    assert build_detector("gmm", {}, seed=7).seed == 7
    assert build_detector("gmm", {"seed": 3}, seed=7).seed == 3


def test_load_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="params.json missing"):
        load_detector(tmp_path)


# --------------------------------------------------------------------------- kNN


def brute_knn(bank, queries, k, metric):
    """Sorted k nearest distances by plain numpy."""
    if metric == "cosine":
        b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        d = 1.0 - q @ b.T
    else:
        d = np.linalg.norm(queries[:, None, :] - bank[None, :, :], axis=2)
    return np.sort(d, axis=1)[:, :k]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("aggregate", ["mean", "kth"])
@pytest.mark.parametrize("k", [1, 4])
def test_knn_matches_brute_force(metric, aggregate, k):
    rng = np.random.default_rng(1)
    bank, queries = rng.normal(size=(300, 16)), rng.normal(size=(40, 16))
    det = build_detector("knn", {"k": k, "metric": metric, "aggregate": aggregate, "batch_size": 7})
    got = det.fit(bank).decision_function(queries)
    d = brute_knn(bank, queries, k, metric)
    want = d.mean(axis=1) if aggregate == "mean" else d[:, -1]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def hand_rescaled(bank, queries, k, density_k):
    """Wilkinghoff et al. 2025: distance to each bank point over that point's mean k-NN distance."""
    d_bank = np.linalg.norm(bank[:, None] - bank[None], axis=2)
    scale = np.sort(d_bank, axis=0)[1 : density_k + 1].mean(axis=0)
    d = np.linalg.norm(queries[:, None] - bank[None], axis=2) / scale[None, :]
    return np.sort(d, axis=1)[:, :k].mean(axis=1)


@pytest.mark.parametrize("candidates", [None, 1000])
def test_density_rescaled_knn_matches_hand_computation(candidates):
    rng = np.random.default_rng(2)
    # a dense and a sparse cluster: rescaling must favour the sparse one's own neighbours
    bank = np.r_[rng.normal(size=(120, 5)) * 0.2, rng.normal(size=(8, 5)) * 2.0 + 6.0]
    queries = rng.normal(size=(30, 5)) * 2.0 + 3.0
    conf = {"k": 3, "metric": "l2", "density_rescaled": True, "density_k": 4,
            "rescale_candidates": candidates, "batch_size": 11}
    got = build_detector("knn", conf).fit(bank).decision_function(queries)
    np.testing.assert_allclose(got, hand_rescaled(bank, queries, 3, 4), rtol=1e-4)


def test_density_rescaled_approximate_agrees_when_candidates_cover_neighbours(tmp_path):
    rng = np.random.default_rng(3)
    bank, queries = rng.normal(size=(500, 8)), rng.normal(size=(20, 8))
    conf = {"k": 2, "density_rescaled": True}
    exact = build_detector("knn", conf).fit(bank)
    approx = build_detector("knn", {**conf, "rescale_candidates": 200}).fit(bank)
    np.testing.assert_allclose(approx.decision_function(queries), exact.decision_function(queries), rtol=1e-6)
    exact.save(tmp_path / "knn")
    np.testing.assert_array_equal(load_detector(tmp_path / "knn").decision_function(queries), exact.decision_function(queries))


def test_knn_with_fewer_bank_rows_than_k_uses_all_and_warns():
    rng = np.random.default_rng(4)
    bank, queries = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    with pytest.warns(UserWarning, match="only 3 bank rows"):
        det = build_detector("knn", {"k": 10, "metric": "l2"}).fit(bank)
    np.testing.assert_allclose(det.decision_function(queries), brute_knn(bank, queries, 3, "l2").mean(1), rtol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_torch_flat_index_matches_faiss(metric):
    """The GPU search without faiss-gpu answers as FAISS's flat index does (run here on the CPU)."""
    rng = np.random.default_rng(5)
    det = build_detector("knn", {"metric": metric, "use_gpu": False})
    bank, queries = det._prepare(rng.normal(size=(500, 16))), det._prepare(rng.normal(size=(60, 16)))
    cpu_index = det._new_index(16)
    cpu_index.add(bank)
    want_values, want_ids = cpu_index.search(queries, 5)
    values, ids = knn_module.TorchFlatIndex(cpu_index, metric, "cpu").search(queries, 5)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(values, want_values, rtol=1e-5, atol=1e-5)
    assert ids.dtype == np.int64


class _CpuTorchFlatIndex(knn_module.TorchFlatIndex):
    """The torch search as the detector places it on a CUDA device, but on the CPU (no GPU needed)."""

    def __init__(self, cpu_index, metric, device):
        super().__init__(cpu_index, metric, "cpu")


def test_knn_use_gpu_true_without_faiss_gpu_searches_in_torch_and_saves_the_faiss_index(monkeypatch, tmp_path):
    monkeypatch.setattr(knn_module, "faiss_gpu_available", lambda: False)
    monkeypatch.setattr(knn_module, "torch_cuda_available", lambda: True)
    monkeypatch.setattr(knn_module, "TorchFlatIndex", _CpuTorchFlatIndex)
    rng = np.random.default_rng(6)
    bank, queries = rng.normal(size=(400, 12)), rng.normal(size=(50, 12))
    conf = {"k": 3, "density_rescaled": True, "rescale_candidates": 50}
    on_torch = build_detector("knn", {**conf, "use_gpu": True}).fit(bank)
    on_faiss = build_detector("knn", {**conf, "use_gpu": False}).fit(bank)
    assert isinstance(on_torch.index_, _CpuTorchFlatIndex)
    np.testing.assert_allclose(on_torch.decision_function(queries), on_faiss.decision_function(queries), rtol=1e-5)
    on_torch.save(tmp_path / "knn")
    assert import_faiss().read_index(str(tmp_path / "knn" / "index.faiss")).ntotal == 400
    again = load_detector(tmp_path / "knn")
    assert isinstance(again.index_, _CpuTorchFlatIndex)
    np.testing.assert_array_equal(again.decision_function(queries), on_torch.decision_function(queries))


def test_knn_use_gpu_true_without_any_cuda_is_a_config_error(monkeypatch):
    monkeypatch.setattr(knn_module, "faiss_gpu_available", lambda: False)
    monkeypatch.setattr(knn_module, "torch_cuda_available", lambda: False)
    with pytest.raises(ConfigError, match="use_gpu=true but neither faiss nor torch sees a CUDA device"):
        build_detector("knn", {"use_gpu": True}).fit(np.zeros((4, 3)))
    # 'auto' falls back to the CPU index
    assert not isinstance(build_detector("knn", {}).fit(np.eye(4)).index_, knn_module.TorchFlatIndex)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_knn_on_cuda_equals_the_cpu_index():
    rng = np.random.default_rng(7)
    bank, queries = rng.normal(size=(5000, 64)), rng.normal(size=(500, 64))
    gpu = build_detector("knn", {"k": 2, "use_gpu": True}).fit(bank).decision_function(queries)
    cpu = build_detector("knn", {"k": 2, "use_gpu": False}).fit(bank).decision_function(queries)
    np.testing.assert_allclose(gpu, cpu, atol=1e-5)


def test_missing_faiss_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError) as info:
        import_faiss()
    assert str(info.value) == FAISS_MISSING
    assert "hybrid_asd[cpu]" in FAISS_MISSING and "never both" in FAISS_MISSING


# --------------------------------------------------------------------------- GMM, Mahalanobis


def test_gmm_matches_sklearn(data):
    from sklearn.mixture import GaussianMixture

    train, inliers, _ = data
    conf = {"n_components": 3, "covariance_type": "diag", "reg_covar": 1e-4, "max_iter": 50, "seed": 5}
    got = build_detector("gmm", conf).fit(train).decision_function(inliers)
    ref = GaussianMixture(3, covariance_type="diag", reg_covar=1e-4, max_iter=50, random_state=5).fit(train)
    np.testing.assert_allclose(got, -ref.score_samples(inliers), rtol=1e-10)


def test_gmm_reduces_components_with_warning():
    X = np.random.default_rng(0).normal(size=(3, 2))
    with pytest.warns(UserWarning, match="n_components=5 > 3"):
        det = build_detector("gmm", {"n_components": 5, "covariance_type": "spherical"}).fit(X)
    assert det.n_components_ == 3


@pytest.mark.parametrize("squared", [True, False])
def test_mahalanobis_matches_sklearn_ledoit_wolf(data, squared):
    from sklearn.covariance import LedoitWolf

    train, inliers, _ = data
    got = build_detector("mahalanobis", {"squared": squared}).fit(train).decision_function(inliers)
    ref = LedoitWolf().fit(train).mahalanobis(inliers)  # squared distances
    np.testing.assert_allclose(got, ref if squared else np.sqrt(ref), rtol=1e-8)


# --------------------------------------------------------------------------- flow


@pytest.mark.parametrize("library", ["zuko", "nflows"])
def test_conditional_flow_uses_the_condition(library, tmp_path):
    if library == "nflows" and importlib.util.find_spec("nflows") is None:
        pytest.skip("nflows is not installed (optional extra)")
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(100, 4)) + 3, rng.normal(size=(100, 4)) - 3]
    cond = np.repeat([0, 1], 100)
    conf = {"library": library, "conditional": True, "epochs": 15, "transforms": 2,
            "hidden_features": 16, "batch_size": 32, "device": "cpu"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nflows' own deprecation warnings
        det = build_detector("flow", conf).fit(X, cond)
    x = rng.normal(size=(20, 4)) + 3
    right, wrong = det.decision_function(x, np.zeros(20, int)), det.decision_function(x, np.ones(20, int))
    assert right.mean() < wrong.mean()
    det.save(tmp_path / "f")
    np.testing.assert_array_equal(load_detector(tmp_path / "f").decision_function(x, np.zeros(20, int)), right)
    with pytest.raises(DataError, match="condition id 7 was not seen"):
        det.decision_function(x, np.full(20, 7))
    with pytest.raises(DataError, match="needs a condition"):
        det.decision_function(x)


def test_nflows_backend_fits_and_detects(data):
    if importlib.util.find_spec("nflows") is None:
        pytest.skip("nflows is not installed (optional extra)")
    train, inliers, outliers = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = build_detector("flow", {**TINY_CONF["flow"], "library": "nflows", "model": "nsf"}).fit(train)
    assert det.decision_function(outliers).min() > det.decision_function(inliers).max()


def test_flow_score_is_nll_in_input_units():
    """An untrained (epochs=0) flow is near a standard normal in the standardised space, so the
    NLL of the raw row must include the standardisation's log-determinant."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3)) * 10.0
    det = build_detector("flow", {"epochs": 0, "transforms": 1, "hidden_features": 8, "device": "cpu"}).fit(X)
    z = (X - det.mean_) / det.std_
    gauss_nll = 0.5 * (z**2).sum(1) + 1.5 * np.log(2 * np.pi) + np.log(det.std_).sum()
    assert abs(np.median(det.decision_function(X) - gauss_nll)) < 1.0


# --------------------------------------------------------------------------- AE, IDNN


def test_autoencoder_learns_and_matches_baseline_shape():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 4)) @ rng.normal(size=(4, 20)) + 1.0  # rank 4: fits the 8-d bottleneck
    det = build_detector("ae", {"epochs": 30, "batch_size": 64, "device": "cpu"}).fit(X)
    assert det.final_loss_ < 0.5 * det.initial_loss_
    assert len(det.loss_history_) == 30
    np.testing.assert_allclose(det.decision_function(X).mean(), det.final_loss_, rtol=1e-5)
    # official baseline: 640 -> 128 x4 -> 8 -> 128 x4 -> 640, BatchNorm + ReLU after each hidden Dense
    net = build_detector("ae", {})._build_module(640)
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == (
        [(640, 128)] + [(128, 128)] * 3 + [(128, 8), (8, 128)] + [(128, 128)] * 3 + [(128, 640)]
    )
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in net) == 9


def test_idnn_predicts_the_centre_frame():
    det = build_detector("idnn", {"n_frames": 5})
    net = det._build_module(640)
    assert net[0].in_features == 512 and net[-1].out_features == 128
    X = np.arange(10, dtype=float)[None, :]  # 5 frames x 2 mels
    context, centre = det._split(X)
    np.testing.assert_array_equal(centre, [[4, 5]])
    np.testing.assert_array_equal(context, [[0, 1, 2, 3, 6, 7, 8, 9]])
    with pytest.raises(DataError, match="not a multiple of n_frames=5"):
        det.fit(np.zeros((10, 12)))
    with pytest.raises(ConfigError, match="n_frames"):
        build_detector("idnn", {"n_frames": 4})


def test_torch_training_is_seeded_and_leaves_global_rng_alone(data):
    train, inliers, _ = data
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_detector("ae", TINY_CONF["ae"], seed=1).fit(train).decision_function(inliers)
    after = torch.rand(1)
    b = build_detector("ae", TINY_CONF["ae"], seed=1).fit(train).decision_function(inliers)
    np.testing.assert_array_equal(a, b)
    assert torch.equal(before, after)


def test_score_samples_is_a_deprecated_alias_with_the_same_sign():
    rng = np.random.default_rng(0)
    train, queries = rng.normal(size=(50, 4)), rng.normal(size=(5, 4)) * 3
    det = build_detector("mahalanobis").fit(train)
    with pytest.warns(DeprecationWarning, match="use decision_function"):
        old = det.score_samples(queries)
    np.testing.assert_array_equal(old, det.decision_function(queries))
    wrapper = DomainAdaptiveDetector("mahalanobis", mode="pooled").fit(train, np.array(["source"] * 50))
    with pytest.warns(DeprecationWarning, match="use decision_function"):
        np.testing.assert_array_equal(wrapper.score_samples(queries), wrapper.decision_function(queries))
