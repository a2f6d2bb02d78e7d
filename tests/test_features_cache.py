"""FeatureCache: hits, misses on config or content changes, atomic entries, default folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hybrid_asd.data.audio import load_audio
from hybrid_asd.errors import DataError
from hybrid_asd.features import cache as cache_module
from hybrid_asd.features.cache import FeatureCache, default_cache_dir
from hybrid_asd.features.logmel import compute_logmel
from hybrid_asd.features.settings import FeatureSettings

FEATURE_DEFAULTS = FeatureSettings().to_dict()

DATA_CONF = {"sample_rate": 16000, "channel": 0, "duration": None, "resample": True}


def _write_wav(path: Path, seconds: float = 1.0, seed: int = 0, sr: int = 16000) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(path, (rng.normal(0, 0.1, int(seconds * sr))).clip(-1, 1), sr, subtype="PCM_16")
    return path


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.npy"))


@pytest.fixture
def wavs(tmp_path: Path) -> list[Path]:
    audio = tmp_path / "audio"
    audio.mkdir()
    return [_write_wav(audio / f"clip{i}.wav", seed=i) for i in range(3)]


def test_miss_then_hit_returns_identical_arrays(tmp_path, wavs):
    cache = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=tmp_path / "c")
    first = cache.get(wavs[0])
    assert first.dtype == np.float32 and first.shape == (128, 32)
    expected = compute_logmel(load_audio(wavs[0]), FEATURE_DEFAULTS)
    np.testing.assert_allclose(first, expected, atol=1e-4, rtol=0)
    entries = _entries(tmp_path / "c")
    assert len(entries) == 1 and entries[0].parent.name == entries[0].stem[:2]
    again = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=tmp_path / "c").get(wavs[0])
    np.testing.assert_array_equal(again, first)
    assert cache.ensure(wavs, progress=False) == 2  # only the two not yet cached
    assert cache.ensure(wavs, progress=False) == 0


def test_get_many_order_duplicates_and_mixed_lengths(tmp_path, wavs):
    long_clip = _write_wav(tmp_path / "audio" / "long.wav", seconds=1.5, seed=9)
    paths = [wavs[0], long_clip, wavs[1], wavs[0], wavs[2]]
    cache = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=tmp_path / "c")
    out = cache.get_many(paths, progress=False, batch_size=2)
    assert [a.shape[1] for a in out] == [32, 47, 32, 32, 32]
    assert len(_entries(tmp_path / "c")) == 4
    np.testing.assert_array_equal(out[0], out[3])
    for path, array in zip(paths, out):
        np.testing.assert_allclose(array, compute_logmel(load_audio(path), FEATURE_DEFAULTS), atol=1e-4, rtol=0)
    cached = cache.get_many(paths, progress=False)
    for a, b in zip(out, cached):
        np.testing.assert_array_equal(a, b)


def test_changed_config_misses(tmp_path, wavs):
    base = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=tmp_path / "c")
    base.get(wavs[0])
    # Keys that are not front-end keys do not change the features: still a hit.
    same = FeatureCache({**FEATURE_DEFAULTS, "patch_hop": 4}, DATA_CONF, cache_dir=tmp_path / "c")
    assert same.key(wavs[0]) == base.key(wavs[0])
    assert same.ensure([wavs[0]], progress=False) == 0
    # A partial features section with default values is the same config.
    assert FeatureCache({}, {}, cache_dir=tmp_path / "c").key(wavs[0]) == base.key(wavs[0])
    assert FeatureCache({"power": 2}, {"duration": None, "sample_rate": 16000}, cache_dir=tmp_path / "c").key(
        wavs[0]
    ) == base.key(wavs[0])
    for features, data in [
        ({**FEATURE_DEFAULTS, "n_mels": 64}, DATA_CONF),
        ({**FEATURE_DEFAULTS, "pad_mode": "constant"}, DATA_CONF),
        (FEATURE_DEFAULTS, {**DATA_CONF, "duration": 0.5}),
        (FEATURE_DEFAULTS, {**DATA_CONF, "sample_rate": 8000}),
    ]:
        other = FeatureCache(features, data, cache_dir=tmp_path / "c")
        assert other.key(wavs[0]) != base.key(wavs[0])
        assert other.ensure([wavs[0]], progress=False) == 1
    assert FeatureCache(FEATURE_DEFAULTS, {**DATA_CONF, "duration": 0.5}, cache_dir=tmp_path / "c").get(
        wavs[0]
    ).shape == (128, 16)


def test_changed_content_misses_and_renamed_file_hits(tmp_path, wavs):
    cache_dir = tmp_path / "c"
    before = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=cache_dir).get(wavs[0])
    renamed = wavs[0].with_name("renamed.wav")
    shutil.copy(wavs[0], renamed)
    cache = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=cache_dir)
    assert cache.ensure([renamed], progress=False) == 0
    _write_wav(wavs[0], seed=42)  # same name and size, new samples
    cache = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=cache_dir)
    after = cache.get(wavs[0])
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, compute_logmel(load_audio(wavs[0]), FEATURE_DEFAULTS), atol=1e-4, rtol=0)
    assert len(_entries(cache_dir)) == 2


def test_stale_temp_file_and_corrupt_entry_do_not_break_it(tmp_path, wavs, caplog):
    cache = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=tmp_path / "c")
    entry = cache.entry_path(cache.key(wavs[0]))
    entry.parent.mkdir(parents=True)
    stale = entry.parent / f".{entry.name}.k3j2h1.tmp"  # what an interrupted atomic write leaves
    stale.write_bytes(b"\x93NUMPY half-written")
    good = cache.get(wavs[0])
    assert entry.is_file()
    np.testing.assert_array_equal(cache.get(wavs[0]), good)
    entry.write_bytes(entry.read_bytes()[:100])  # damaged from outside: recomputed, with a warning
    with caplog.at_level("WARNING", logger="hybrid_asd.features.cache"):
        np.testing.assert_array_equal(cache.get(wavs[0]), good)
    assert "recomputing" in caplog.text


def test_interrupted_write_leaves_no_entry(tmp_path, wavs, monkeypatch):
    cache = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=tmp_path / "c")
    entry = cache.entry_path(cache.key(wavs[0]))
    original = Path.write_bytes

    def write_half_then_interrupt(self: Path, data: bytes) -> int:
        original(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", write_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        cache.get(wavs[0])
    monkeypatch.undo()
    assert not entry.exists()
    assert list(entry.parent.iterdir()) == []  # the temporary file is removed too
    assert cache.get(wavs[0]).shape == (128, 32)


def test_default_cache_dir(tmp_path, monkeypatch, wavs):
    monkeypatch.setenv("HYBRID_ASD_CACHE", str(tmp_path / "from_env"))
    assert default_cache_dir() == tmp_path / "from_env"
    cache = FeatureCache(FEATURE_DEFAULTS, DATA_CONF)
    assert cache.cache_dir == tmp_path / "from_env"
    cache.get(wavs[0])
    assert len(_entries(tmp_path / "from_env")) == 1
    conf = {**FEATURE_DEFAULTS, "cache_dir": str(tmp_path / "from_conf")}
    assert FeatureCache(conf, DATA_CONF).cache_dir == tmp_path / "from_conf"
    assert FeatureCache(conf, DATA_CONF, cache_dir=tmp_path / "arg").cache_dir == tmp_path / "arg"
    monkeypatch.delenv("HYBRID_ASD_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "hybrid_asd" / "features"
    assert cache_module.DEFAULT_CACHE_DIR.expanduser() != Path.cwd()


def test_missing_file_raises_data_error(tmp_path):
    cache = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="nothere.wav"):
        cache.get(tmp_path / "nothere.wav")


def test_real_clips_mixed_lengths(tmp_path, shared_data):
    clips = sorted((shared_data / "dcase2023t2-samples" / "dev_data" / "raw").glob("*/train/*.wav"))[:6]
    toycar = sorted((shared_data / "dcase2023t2-samples" / "dev_data" / "raw" / "ToyCar").rglob("*.wav"))[:1]
    paths = clips + toycar
    cache = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=tmp_path / "c")
    out = cache.get_many(paths, progress=False, batch_size=4)
    assert out[-1].shape == (128, 376)  # 12 s ToyCar clip
    for path, array in zip(paths, out):
        np.testing.assert_allclose(array, compute_logmel(load_audio(path), FEATURE_DEFAULTS), atol=1e-4, rtol=0)
    ten_s = FeatureCache(FEATURE_DEFAULTS, {**DATA_CONF, "duration": 10.0}, cache_dir=tmp_path / "c")
    assert ten_s.get(toycar[0]).shape == (128, 313)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_cache_matches_cpu(tmp_path, wavs):
    cpu = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=tmp_path / "cpu").get_many(wavs, progress=False)
    gpu = FeatureCache(FEATURE_DEFAULTS, DATA_CONF, cache_dir=tmp_path / "gpu", device="cuda").get_many(
        wavs, progress=False
    )
    for a, b in zip(cpu, gpu):
        assert np.abs(a - b).max() < 1e-3
