"""data.channel (index | mean | all) through features, extractor and detectors; supplemental clips as
training clips and as background noise for the extractor."""

from __future__ import annotations


import numpy as np
import pytest

from dcase_fixtures import write_dcase2025_dev, write_dcase2026_dev
from hybrid_asd.config import load_config
from hybrid_asd.data.settings import SupplementalSettings
from hybrid_asd.detectors.stage import feature_rows
from hybrid_asd.errors import ConfigError, DataError
from hybrid_asd.experiment import Experiment
from hybrid_asd.extractor.dataset import PatchDataset
from hybrid_asd.extractor.embed import clip_windows
from hybrid_asd.extractor.noise import NoiseMixer
from hybrid_asd.features.cache import FeatureCache
from hybrid_asd.features.patches import clip_statistics, stack_frames
from hybrid_asd.pipeline import run_stage, run_stages


# --- log-mel planes ---------------------------------------------------------------------------------
def test_feature_cache_gives_one_plane_per_channel(tmp_path):
    written = write_dcase2026_dev(tmp_path / "d", machines=("ToyCar",), n_source=1, n_target=0, n_test=0)
    path = written["train"][0]
    single = {c: FeatureCache({}, {"channel": c}, cache_dir=tmp_path / "cache").get(path) for c in (0, 1)}
    both = FeatureCache({}, {"channel": "all"}, cache_dir=tmp_path / "cache").get(path)
    assert both.shape == (2, 128, 32) and single[0].shape == (128, 32)
    np.testing.assert_allclose(both[0], single[0], atol=1e-4)
    np.testing.assert_allclose(both[1], single[1], atol=1e-4)
    # the far microphone is noisier: its quietest bands sit higher
    assert np.percentile(both[1], 10) > np.percentile(both[0], 10) + 3
    again = FeatureCache({}, {"channel": "all"}, cache_dir=tmp_path / "cache")
    assert again.get(path).shape == (2, 128, 32)  # read back from the cache as three-dimensional
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3  # index 0, index 1, all: three entries



def test_too_short_check_counts_samples_not_channels(tmp_path):
    """The one-line error for a clip too short for one log-mel frame (#14) counts the samples of a
    (channels, n) waveform (data.channel: all), not its channels."""
    import soundfile as sf

    folder = tmp_path / "fan" / "train"
    folder.mkdir(parents=True)
    ok = folder / "section_00_source_train_normal_0000_a_1.wav"
    short = folder / "section_00_source_train_normal_0001_a_1.wav"
    sf.write(ok, np.zeros((1600, 2), np.float32), 16000)
    sf.write(short, np.zeros((160, 2), np.float32), 16000)
    cache = FeatureCache({}, {"channel": "all"}, cache_dir=tmp_path / "cache")
    assert cache.get(ok).shape == (2, 128, 4)
    with pytest.raises(DataError, match=r"normal_0001_a_1.wav: 160 samples \(0.010 s\) is too short"):
        cache.get(short)

def test_detector_rows_concatenate_the_channels():
    rng = np.random.default_rng(0)
    logmels = [rng.normal(size=(2, 4, 10)).astype(np.float32) for _ in range(3)]
    stats = feature_rows("logmel_stats", logmels, 5)
    assert stats.X.shape == (3, 2 * 2 * 4)
    np.testing.assert_allclose(stats.X[1, :8], clip_statistics(logmels[1][0]), rtol=1e-6)
    np.testing.assert_allclose(stats.X[1, 8:], clip_statistics(logmels[1][1]), rtol=1e-6)
    frames = feature_rows("logmel_frames", logmels, 5)
    assert frames.X.shape == (3 * 6, 2 * 5 * 4) and list(frames.clip_index[:7]) == [0] * 6 + [1]
    np.testing.assert_array_equal(frames.X[6:12, :20], stack_frames(logmels[1][0], 5))
    np.testing.assert_array_equal(frames.X[6:12, 20:], stack_frames(logmels[1][1], 5))


def test_patch_dataset_and_extraction_windows_with_two_planes():
    logmels = [np.arange(2 * 3 * 20, dtype=np.float32).reshape(2, 3, 20) + 1000 * i for i in range(2)]
    ds = PatchDataset(logmels, np.array([0, 1]), frames=8, hop=4)
    assert ds.in_channels == 2 and len(ds) == 2 * 4
    x, y = ds.__getitems__([0, 5])
    assert tuple(x.shape) == (2, 2, 3, 8) and y.tolist() == [0, 1]
    np.testing.assert_array_equal(x[1].numpy(), logmels[1][:, :, 4:12])  # clip 1, second patch, both planes
    meta = {"input": "patches", "patch_frames": 8, "patch_hop": 4, "in_channels": 2}
    windows = clip_windows(logmels[1], meta, "c")
    assert windows.shape == (4, 2, 3, 8)
    np.testing.assert_array_equal(windows[1], x[1].numpy())  # the same inputs in training and extraction
    assert clip_windows(logmels[0][0], {"input": "patches", "patch_frames": 8, "patch_hop": 4}, "c").shape == (
        4, 1, 3, 8)
    with pytest.raises(DataError, match="trained on 2"):
        clip_windows(logmels[0][0], meta, "c")
    with pytest.raises(DataError, match="different numbers of channels"):
        PatchDataset([logmels[0], logmels[1][0]], np.array([0, 1]), frames=8, hop=4, names=["a", "b"])


def test_all_channels_need_log_mel_input():
    with pytest.raises(ConfigError, match="extractor.input = 'waveform'.*data.channel: all"):
        load_config(None, ["data.channel=all", "extractor.backbone.name=multibranch", "extractor.input=waveform"])


# --- noise mixing -------------------------------------------------------------------------------------
def test_noise_mixing_in_the_mel_power_domain_hits_the_snr():
    # signal 0 dB everywhere (power 1), noise 6 dB (power ~3.98): at SNR 10 dB the noise is scaled to
    # power 0.1, so every value becomes 10 log10(1.1) = 0.41393 dB
    noise = [np.full((1, 3, 50), 6.0, np.float32)]
    mixer = NoiseMixer(noise, (10.0, 10.0), prob=1.0)
    batch = np.zeros((4, 1, 3, 8), np.float32)
    out = mixer.mix(batch, np.random.default_rng(0))
    np.testing.assert_allclose(out, 10 * np.log10(1.1), rtol=1e-6)
    assert not batch.any()  # the input is left alone
    assert np.array_equal(NoiseMixer(noise, (10.0, 10.0), prob=0.0).mix(batch, np.random.default_rng(0)), batch)
    # per-window SNR: a 20 dB window at SNR 0 dB gets equal noise power: 20 + 10 log10(2)
    loud = np.full((1, 1, 3, 8), 20.0, np.float32)
    np.testing.assert_allclose(NoiseMixer(noise, (0.0, 0.0), 1.0).mix(loud, np.random.default_rng(1)),
                               20 + 10 * np.log10(2), rtol=1e-6)


def test_noise_mixing_of_waveforms_hits_the_snr():
    noise = [np.tile(np.array([1.0, -1.0], np.float32), 100)]  # power 1
    mixer = NoiseMixer(noise, (20.0, 20.0), prob=1.0, waves=True)
    crops = np.full((3, 1, 16), 0.5, np.float32)  # power 0.25: noise scaled by sqrt(0.25 / 100) = 0.05
    out = mixer.mix_waves(crops, np.random.default_rng(0))
    np.testing.assert_allclose(np.sort(np.unique(np.round(out, 6))), [0.45, 0.55], atol=1e-6)


def test_noise_settings_validate():
    assert SupplementalSettings().use == "none"
    with pytest.raises(ConfigError, match=r"data.supplemental.snr_db.*low <= high"):
        load_config(None, ["data.supplemental.snr_db=[10, 0]"])
    with pytest.raises(ConfigError, match="data.supplemental.use"):
        load_config(None, ["data.supplemental.use=sometimes"])


# --- pipeline ---------------------------------------------------------------------------------------------
TINY = ["extractor.backbone.name=tiny_cnn", "extractor.epochs=1", "extractor.batch_size=8",
        "features.patch_frames=16", "features.patch_hop=8", "seed=1"]


def test_supplemental_clips_as_training_clips_and_noise(tmp_path, monkeypatch):
    from hybrid_asd.extractor import train as train_module

    mixers: list[NoiseMixer] = []

    class Spy(NoiseMixer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.calls = 0
            mixers.append(self)

        def mix(self, batch, rng):
            self.calls += 1
            return super().mix(batch, rng)

    monkeypatch.setattr(train_module, "NoiseMixer", Spy)
    write_dcase2025_dev(tmp_path / "d", n_source=5, n_target=2, n_test=2, n_supplemental=3)
    exp = Experiment(tmp_path / "exp")
    base = [f"data.root={tmp_path / 'd'}", "data.machine=bearing", *TINY]
    config = load_config(None, base)
    run_stages(exp, config, stop_stage="prepare", progress=False)
    assert len(exp.train_clips()) == 7 and len(exp.supplemental_clips()) == 6  # ignored by default
    config = load_config(None, base + ["data.supplemental.use=both"])
    run_stages(exp, config, stop_stage="train", overwrite=True, progress=False)
    train = exp.train_clips()
    extra = [c for c in train if c.kind == "machine"]
    assert len(train) == 10 and len(extra) == 3
    assert {(c.split, c.domain, c.label) for c in extra} == {("train", "source", "normal")}
    # the three noise-only clips (1 s = 32 frames each, powers) were mixed into the training batches
    (mixer,) = mixers
    assert mixer.data.shape == (1, 128, 3 * 32) and mixer.snr_db == (0.0, 20.0) and mixer.calls > 0
    assert exp.extractor.checkpoint.is_file()
    # a kind that is not there is a one-line error naming the folder and the kinds found
    config = load_config(None, base + ["data.supplemental.use=noise", "data.supplemental.noise_kinds=[hum]"])
    with pytest.raises(DataError, match=r"bearing/supplemental holds no supplemental clip of noise_kinds \['hum'\] "
                                        r"\(kinds found: machine, noise\)"):
        run_stage(exp, config, "prepare", force=True)


def test_two_channel_experiment_with_all_channels(tmp_path):
    write_dcase2026_dev(tmp_path / "d", machines=("ToyCar",), n_source=6, n_target=2, n_test=2)
    config = load_config(None, [f"data.root={tmp_path / 'd'}", "data.machine=ToyCar", "data.channel=all", *TINY,
                                "detectors=[{name: knn, conf: {k: 1}}, "
                                "{name: gmm, id: gmm_stats, input: logmel_stats, conf: {n_components: 1}}]"])
    exp = Experiment(tmp_path / "exp")
    run_stages(exp, config, stop_stage="score", progress=False)
    torch = __import__("torch")
    ckpt = torch.load(exp.extractor.checkpoint, weights_only=True)
    assert ckpt["meta"]["in_channels"] == 2
    assert tuple(ckpt["model"]["backbone.body.0.weight"].shape)[1] == 2  # the first conv sees two planes
    assert np.load(exp.embeddings_path).shape == (8 + 8, 128)
    from hybrid_asd.scores import ScoreTable

    for table_id in ("oe", "knn", "gmm_stats"):
        table = ScoreTable.from_csv(exp.score_table_path(table_id))
        assert np.isfinite(table.scores).all() and len(table.select(split="test")) == 8
    # with issue #14's code paths: the log-mel statistics of both planes (2 x 2 x 128) are standardised,
    # the embeddings not; every table's decision files follow the thresholds written beside them; the
    # extractor's validation saw the target domain (target_validation: crops, on the frame axis)
    from hybrid_asd.detectors.adapt import DomainAdaptiveDetector
    from hybrid_asd.evaluation.submission import read_submission_dir
    from hybrid_asd.evaluation.thresholds import decisions_from_thresholds, read_thresholds

    stats = DomainAdaptiveDetector.load(exp.detector_model_dir("gmm_stats", "section_00"))
    assert stats.standardise and stats.input_mean_.shape == (2 * 2 * 128,)
    assert DomainAdaptiveDetector.load(exp.detector_model_dir("knn", "section_00")).input_mean_ is None
    for table_id in ("oe", "knn", "gmm_stats"):
        table = ScoreTable.from_csv(exp.score_table_path(table_id))
        thresholds = read_thresholds(exp.thresholds_path(table_id))
        assert set(thresholds) == {("ToyCar", 0, "source"), ("ToyCar", 0, "target")}
        assert read_submission_dir(exp.submission_dir(table_id)).decisions == decisions_from_thresholds(
            table, thresholds)
    log = exp.extractor.train_log.read_text().splitlines()
    row = dict(zip(log[0].split(","), log[-1].split(",")))
    assert np.isfinite(float(row["val_target_acc"]))


def test_two_channel_synthetic_data_through_the_pipeline(tmp_path):
    """The synthetic generator's stereo clips (``channels=2``, near and far microphone) are DCASE 2026
    shaped input: with ``data.channel=all`` the extractor sees both microphones as two input planes."""
    from hybrid_asd.data import synthetic

    synthetic.generate(tmp_path / "d", preset="tiny", machines=["valve"], sections=1, n_source_train=6,
                       n_target_train=2, n_test_per_class=2, duration=1.0, channels=2, progress=False)
    base = [f"data.root={tmp_path / 'd'}", "data.machine=valve", *TINY,
            "detectors=[{name: knn, conf: {k: 1}}, {name: mahalanobis, id: stats, input: logmel_stats}]"]
    torch = __import__("torch")
    for channel, planes in (("all", 2),):
        exp = Experiment(tmp_path / f"exp_{channel}")
        run_stages(exp, load_config(None, base + [f"data.channel={channel}"]), stop_stage="score", progress=False)
        ckpt = torch.load(exp.extractor.checkpoint, weights_only=True)
        assert tuple(ckpt["model"]["backbone.body.0.weight"].shape)[1] == planes  # the first conv's input planes
        from hybrid_asd.scores import ScoreTable

        for table_id in ("oe", "knn", "stats"):
            table = ScoreTable.from_csv(exp.score_table_path(table_id))
            assert np.isfinite(table.scores).all() and len(table.select(split="test")) == 8
