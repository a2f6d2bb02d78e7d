"""LogMel against librosa (the official baselines' front end) on real clips."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid_asd.features.logmel import LogMel, compute_logmel, slaney_mel_filterbank

librosa = pytest.importorskip("librosa")
# librosa.load imports audioread, which imports modules deprecated in Python 3.11.
pytestmark = pytest.mark.filterwarnings("ignore:'(aifc|audioop|sunau)' is deprecated:DeprecationWarning")

TOL_DB = 1e-3


def _dcase2023_clips(shared_data: Path) -> list[Path]:
    clips = sorted((shared_data / "dcase2023t2-samples").rglob("*.wav"))
    assert clips, "no dcase2023 sample clips found"
    return clips


def _librosa_logmel(y: np.ndarray, sr: int, pad_mode: str = "reflect", power: float = 2.0, **kw) -> np.ndarray:
    """The baselines' recipe, verbatim."""
    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=kw.get("n_fft", 1024), hop_length=kw.get("hop_length", 512),
        n_mels=kw.get("n_mels", 128), power=power, pad_mode=pad_mode,
    )
    return 20.0 / power * np.log10(mel + sys.float_info.epsilon)


@pytest.fixture(scope="module")
def real_waves(shared_data: Path) -> list[tuple[str, np.ndarray]]:
    out = []
    for path in _dcase2023_clips(shared_data):
        y, sr = librosa.load(path, sr=None, mono=True)
        assert sr == 16000
        out.append((path.name, y))
    return out


@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmin,fmax",
    [(16000, 1024, 128, 0.0, None), (16000, 512, 64, 50.0, 7000.0), (22050, 2048, 128, 0.0, 11025.0),
     (48000, 1024, 40, 20.0, None)],
)
def test_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    ours = slaney_mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney")
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_logmel_matches_librosa_on_real_clips(real_waves, pad_mode):
    module = LogMel(pad_mode=pad_mode)
    lengths = set()
    for name, y in real_waves:
        ref = _librosa_logmel(y, 16000, pad_mode=pad_mode)
        with torch.no_grad():
            ours = module(torch.from_numpy(y)).numpy()
        assert ours.shape == ref.shape, name
        assert np.abs(ours - ref).max() < TOL_DB, f"{name}: max diff {np.abs(ours - ref).max()} dB"
        lengths.add(y.shape[0])
    assert {160000, 192000} <= lengths  # the 10 s clips and the 12 s ToyCar/ToyTrain clips


def test_pad_modes_differ_only_at_the_edges(real_waves):
    y = torch.from_numpy(real_waves[0][1])
    with torch.no_grad():
        a, b = LogMel(pad_mode="reflect")(y), LogMel(pad_mode="constant")(y)
    assert not torch.allclose(a[:, 0], b[:, 0])
    torch.testing.assert_close(a[:, 2:-2], b[:, 2:-2])


def test_power_one_matches_librosa(real_waves):
    y = real_waves[0][1]
    ref = _librosa_logmel(y, 16000, power=1.0, n_mels=64, n_fft=512, hop_length=256)
    with torch.no_grad():
        ours = LogMel(power=1.0, n_mels=64, n_fft=512, hop_length=256)(torch.from_numpy(y)).numpy()
    assert np.abs(ours - ref).max() < TOL_DB


def test_batch_equals_per_clip(real_waves):
    ten_s = [y for _, y in real_waves if y.shape[0] == 160000][:6]
    module = LogMel()
    with torch.no_grad():
        batch = module(torch.from_numpy(np.stack(ten_s)))
        assert batch.shape == (len(ten_s), 128, 313)
        for i, y in enumerate(ten_s):
            single = module(torch.from_numpy(y))
            assert single.shape == (128, 313)
            torch.testing.assert_close(batch[i], single, atol=1e-4, rtol=0)


def test_leading_dims_and_frame_count():
    module = LogMel(n_mels=32)
    wave = torch.randn(2, 3, 16000) * 0.1
    with torch.no_grad():
        out = module(wave)
    assert out.shape == (2, 3, 32, module.n_frames(16000)) == (2, 3, 32, 32)
    assert LogMel(center=False).n_frames(16000) == 1 + (16000 - 1024) // 512
    with torch.no_grad():
        assert module(torch.zeros(0, 16000)).shape == (0, 32, 32)
        assert LogMel(pad_mode="constant")(torch.zeros(100)).shape == (128, 1)  # zero padding allows it


def test_silence_is_the_epsilon_floor():
    with torch.no_grad():
        out = LogMel()(torch.zeros(16000))
    np.testing.assert_allclose(out.numpy(), 10.0 * np.log10(sys.float_info.epsilon), rtol=1e-6)


def test_float64_input_is_computed_in_float64(real_waves):
    y = real_waves[0][1].astype(np.float64)
    with torch.no_grad():
        out = LogMel()(torch.from_numpy(y))
    assert out.dtype == torch.float64
    # Both sides use a float32 filterbank (librosa's default dtype), so float64 gains ~4x, not more.
    assert np.abs(out.numpy() - _librosa_logmel(y, 16000)).max() < TOL_DB / 10


def test_from_config_ignores_other_keys_and_compute_logmel(real_waves):
    conf = {"n_mels": 64, "hop_length": 256, "patch_frames": 64, "cache_dir": "/nowhere", "pad_mode": "constant"}
    module = LogMel.from_config(conf, sample_rate=16000)
    assert (module.n_mels, module.hop_length, module.n_fft, module.pad_mode) == (64, 256, 1024, "constant")
    y = real_waves[0][1]
    out = compute_logmel(y, conf, sample_rate=16000)
    assert out.dtype == np.float32 and out.shape == (64, 1 + y.shape[0] // 256)
    assert np.abs(out - _librosa_logmel(y, 16000, pad_mode="constant", n_mels=64, hop_length=256)).max() < TOL_DB


def test_gradients_flow_to_the_waveform():
    module = LogMel(sample_rate=8000, n_fft=64, hop_length=32, n_mels=8)
    wave = (torch.randn(2, 300, dtype=torch.float64) * 0.1).requires_grad_()
    assert torch.autograd.gradcheck(module, (wave,))


def test_state_dict_is_empty_and_repr_names_settings():
    module = LogMel()
    assert module.state_dict() == {}
    assert "pad_mode='reflect'" in repr(module)


@pytest.mark.parametrize(
    "kwargs,wave,error",
    [
        ({"pad_mode": "edge"}, None, ValueError),
        ({"fmax": 9000.0}, None, ValueError),
        ({}, torch.zeros(100), ValueError),
        ({}, torch.zeros(16000, dtype=torch.int16), TypeError),
    ],
)
def test_bad_input_raises(kwargs, wave, error):
    with pytest.raises(error):
        module = LogMel(**kwargs)
        module(wave)


def test_compute_logmel_rejects_multichannel():
    with pytest.raises(ValueError, match="mono"):
        compute_logmel(np.zeros((2, 16000), dtype=np.float32), {})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu(real_waves):
    waves = torch.from_numpy(np.stack([y for _, y in real_waves if y.shape[0] == 160000][:4]))
    module = LogMel()
    with torch.no_grad():
        cpu = module(waves)
        gpu = module.to("cuda")(waves.to("cuda")).cpu()
    assert (gpu - cpu).abs().max().item() < TOL_DB
