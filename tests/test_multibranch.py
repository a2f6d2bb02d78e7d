"""The multi-branch whole-clip network (backbone ``multibranch``, ``extractor.input: waveform``):
shapes, gradients, spectra, config errors, crop data, training, checkpoints (tiny, CPU). The shipped
configs run through every stage in tests/test_pipeline.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from interrupt import train_interrupted

from hybrid_asd.config import load_config
from hybrid_asd.data.clips import Clip
from hybrid_asd.errors import ConfigError
from hybrid_asd.extractor.backbones import build_backbone, build_model
from hybrid_asd.extractor.checkpoint import load_checkpoint, read_checkpoint
from hybrid_asd.extractor.embed import extract
from hybrid_asd.extractor.heads import build_head
from hybrid_asd.extractor.labels import make_labels
from hybrid_asd.extractor.multibranch import MultiBranchNet, StftBranch, parse_settings
from hybrid_asd.extractor.settings import ExtractorSettings
from hybrid_asd.extractor.train import train_extractor
from hybrid_asd.extractor.waveforms import CropDataset, waveform_windows

torch.set_num_threads(1)

SR = 4000
# a small network: 0.5 s crops at 4 kHz, width 8, the spectrum branch and two STFT resolutions
TINY = {"sample_rate": SR, "clip_seconds": 0.5, "width": 8, "f_min": 50.0, "f_max": None,
        "stft": [{"n_fft": 128, "hop_length": 64}, {"n_fft": 256, "hop_length": 128}]}
CONFIG_DIR = Path(__file__).resolve().parents[1] / "hybrid_asd" / "configs"


def tiny_net(dim: int = 12, **overrides) -> MultiBranchNet:
    return build_backbone("multibranch", dim, {**TINY, **overrides})


class StubWaves:
    """An in-memory stand-in for WaveformSource (``get_many`` only)."""

    def __init__(self, waves: dict[str, np.ndarray]):
        self.waves = waves

    def get_many(self, paths, progress=True):
        return [self.waves[str(p)] for p in paths]


def tone_set(n_source: int = 8, n_target: int = 2, seconds: float = 0.75, seed: int = 0):
    """Two sections told apart by their fundamental; the target domain adds a second tone."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    clips, waves = [], {}
    for sec, f0 in ((0, 220.0), (1, 330.0)):
        for domain, n in (("source", n_source), ("target", n_target)):
            for i in range(n):
                path = f"/data/fan/train/section_{sec:02d}_{domain}_train_normal_{i:04d}_a_{i % 2}.wav"
                wave = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in (1, 2, 3))
                if domain == "target":
                    wave = wave + 0.1 * np.sin(2 * np.pi * 900.0 * t)
                waves[path] = (wave + rng.normal(0, 0.02, t.size)).astype(np.float32)
                clips.append(Clip(Path(path), "fan", sec, domain, "train", "normal", attributes_raw=f"a_{i % 2}"))
    return clips, StubWaves(waves)


def tiny_conf(**overrides):
    conf = {"backbone": {"name": "multibranch", "conf": TINY}, "input": "waveform", "embedding_dim": 12,
            "head": {"name": "subcluster_adacos",
                     "conf": {"n_subclusters": 2, "trainable_centres": True, "adaptive_scale": False}},
            "labels": "section_attribute", "epochs": 1, "batch_size": 8, "optimizer": {"name": "adamw", "lr": 3e-3}}
    conf.update(overrides)
    return conf


# --- the network ------------------------------------------------------------------------------------
def test_shapes_branches_and_input_length():
    net = tiny_net()
    assert net.samples == 2000 and len(net.branches) == 3
    x = torch.randn(3, 1, 2000)
    assert net(x).shape == (3, 12)
    net.eval()
    torch.testing.assert_close(net(x), net(x[:, 0]))  # (B, 1, L) and (B, L) alike
    with pytest.raises(ValueError, match="crops of 2000 samples"):
        net(torch.randn(3, 1, 1999))
    only_stft = tiny_net(dim=8, spectrum=False, stft=[{"n_fft": 128, "hop_length": 32}])
    assert len(only_stft.branches) == 1 and only_stft(x).shape == (3, 8)
    only_spectrum = tiny_net(dim=5, stft=[])
    assert len(only_spectrum.branches) == 1 and only_spectrum(x).shape == (3, 5)


def test_each_branch_gives_its_share_of_the_embedding():
    net = tiny_net().eval()
    x = torch.randn(2, 2000)
    parts = [branch(x) for branch in net.branches]
    assert [p.shape[1] for p in parts] == [4, 4, 4]
    torch.testing.assert_close(net(x), torch.cat(parts, dim=1))


def test_gradients_reach_every_branch_and_layer():
    model = build_model(ExtractorSettings.parse(tiny_conf()), n_classes=4)
    model.train()
    x, y = torch.randn(6, 1, 2000), torch.tensor([0, 1, 2, 3, 0, 1])
    _, logits = model(x, y)
    model.head.loss_from_logits(logits, y).backward()
    for name, p in model.backbone.named_parameters():
        assert p.grad is not None, name
        # a squeeze-excitation bottleneck of width/16 < 1 unit (here 1) may sit in ReLU's dead zone
        assert ".gate." in name or float(p.grad.abs().sum()) > 0, name
    assert model.head.centres.grad is not None and float(model.head.centres.grad.abs().sum()) > 0
    assert {name.split(".")[1] for name, _ in model.backbone.named_parameters()} == {"0", "1", "2"}


def test_no_bias_unless_asked():
    plain = tiny_net()
    assert not [n for n, _ in plain.named_parameters() if n.endswith("bias")]
    assert all(not m.affine for m in plain.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    with_bias = tiny_net(bias=True)
    assert any(n.endswith("bias") for n, _ in with_bias.named_parameters())
    assert sum(p.numel() for p in with_bias.parameters()) > sum(p.numel() for p in plain.parameters())


def test_spectra():
    net = tiny_net(temporal_norm=True)
    wave = torch.randn(2, 2000)
    spectrum = net.branches[0].magnitude(wave)
    expected = np.abs(np.fft.rfft(wave.numpy().astype(np.float64), axis=1)) / math.sqrt(2000)
    np.testing.assert_allclose(spectrum[:, 0].numpy(), expected, rtol=1e-4, atol=1e-5)
    stft = net.branches[1]
    assert (stft.first_bin, stft.last_bin) == (2, 64)  # 50 Hz / (4000 / 128) -> bin 2 (62.5 Hz) .. Nyquist
    spec = stft.spectrogram(wave)
    assert spec.shape == (2, 63, 1 + 2000 // 64) and spec.dtype == torch.float32
    torch.testing.assert_close(spec.mean(dim=2), torch.zeros(2, 63), atol=1e-5, rtol=0)
    # the cited full-size band: 200 Hz .. 8 kHz of a 1024-point STFT at 16 kHz are bins 13 .. 512
    assert parse_settings({}).band(1024) == (13, 512)


def test_spectra_stay_float32_under_autocast():
    # float16, the dtype extractor.amp uses on CUDA (CPU autocast supports it). Not bfloat16: on this
    # AMX CPU with torch 2.14.1 and 2 threads, oneDNN's bfloat16 convolution returns NaN for finite
    # inputs in about 1 forward pass in 60 (nondeterministic; 0 in 300 with 1 thread, 0 in 1500 in
    # float16); see docs/multibranch.md, "Known problems".
    torch.manual_seed(0)
    net = tiny_net().train()
    wave = torch.randn(4, 1, 2000) * 50.0
    with torch.autocast("cpu", dtype=torch.float16):
        out = net(wave)
        assert net.branches[0].magnitude(wave[:, 0]).dtype == torch.float32
        assert net.branches[1].spectrogram(wave[:, 0]).dtype == torch.float32
    assert torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_full_size_network_matches_the_cited_shapes():
    net = build_backbone("multibranch", 256, {})  # 10 s at 16 kHz, one 1024/512 STFT, width 128
    assert net.samples == 160_000 and len(net.branches) == 2
    spectrum, stft = net.branches
    assert isinstance(stft, StftBranch) and stft.head[2].in_features == 128 * 16  # 500 bins -> 16 after 5 halvings
    assert spectrum.mlp[1].in_features == 128 * 10  # 80001 FFT bins -> 1251 -> 40 -> 10
    assert stft.head[2].out_features == spectrum.mlp[-1].out_features == 128


# --- config errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    (["extractor.backbone.conf.clip_seconds=abc"],
     "extractor.backbone.conf.clip_seconds = 'abc': must be a valid number"),
    (["extractor.backbone.conf.widht=16"], "extractor.backbone.conf.widht = 16: unknown key; known: sample_rate"),
    (["extractor.backbone.conf.width=12"], "extractor.backbone.conf.width = 12: must be a multiple of 8"),
    (["extractor.backbone.conf.stft.0.n_fft=0"], "extractor.backbone.conf.stft.0.n_fft = 0: must be greater than 0"),
    (["extractor.backbone.conf.clip_seconds=0.01"], "extractor.backbone.conf.stft.0.n_fft = 1024: needs a crop longer"),
    (["extractor.backbone.conf.f_max=9000"], "extractor.backbone.conf.f_max = 9000.0: must be at most the Nyquist"),
    (["extractor.backbone.conf.spectrum=false", "extractor.backbone.conf.stft=[]"],
     "extractor.backbone.conf.stft = []: no branch"),
    (["extractor.embedding_dim=255"], "extractor.embedding_dim = 255: must be divisible by the number of branches"),
    (["extractor.input=patches"], "extractor.input = 'patches': backbone 'multibranch' takes waveforms"),
    (["data.sample_rate=22050"], "extractor.backbone.conf.sample_rate = 16000: must equal data.sample_rate (22050)"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG_DIR / "multibranch_scac_knn.yaml", overrides)
    text = str(info.value)
    assert len(text.splitlines()) == 1 and message in text, text


def test_waveform_input_needs_a_waveform_network():
    with pytest.raises(ConfigError, match="extractor.input = 'waveform': backbone 'tiny_cnn' takes log-mels"):
        ExtractorSettings.parse({"backbone": {"name": "tiny_cnn"}, "input": "waveform"}, where="extractor")
    with pytest.raises(ConfigError, match="extractor.input = 'waveform': backbone 'resnet18' takes log-mels"):
        ExtractorSettings.parse({"backbone": {"name": "resnet18"}, "input": "waveform"}, where="extractor")
    with pytest.raises(ConfigError, match=r"extractor.backbone.conf.width = 4: must be a multiple of 8"):
        build_backbone("multibranch", 8, {"width": 4})


# --- crops ------------------------------------------------------------------------------------------
def test_waveform_windows():
    wave = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(waveform_windows(wave, 10), wave[None])
    np.testing.assert_array_equal(waveform_windows(wave, 4), [[0, 1, 2, 3], [4, 5, 6, 7], [6, 7, 8, 9]])
    np.testing.assert_array_equal(waveform_windows(wave, 5), [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    np.testing.assert_array_equal(waveform_windows(wave[:4], 10), [[0, 1, 2, 3, 0, 1, 2, 3, 0, 1]])  # tiled


def test_crop_dataset_random_offsets_oversampling_and_validation_crops():
    waves = [np.arange(100, 120, dtype=np.float32), np.arange(200, 230, dtype=np.float32),
             np.arange(300, 303, dtype=np.float32)]
    ds = CropDataset(waves, np.array([5, 6, 7]), 8, repeats=np.array([1, 2, 1]), seed=3)
    assert len(ds) == 4
    x, y = ds.__getitems__(range(4))
    assert x.shape == (4, 1, 8) and y.tolist() == [5, 6, 6, 7]
    for crop, wave in zip(x[:, 0].numpy(), [waves[0], waves[1], waves[1], np.tile(waves[2], 3)]):
        start = int(np.flatnonzero(wave == crop[0])[0])
        np.testing.assert_array_equal(crop, wave[start:start + 8])  # a contiguous crop of its (tiled) clip
    epochs = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        epochs.append(ds.starts.copy())
    assert len({tuple(s) for s in epochs}) > 1  # offsets re-drawn every epoch
    ds.set_epoch(2)
    np.testing.assert_array_equal(ds.starts, epochs[2])  # and reproducible
    val = CropDataset(waves, np.array([5, 6, 7]), 8, random=False)
    xv, _ = val.__getitems__(range(3))
    np.testing.assert_array_equal(xv[:, 0, 0].numpy(), [100, 200, 300])


def test_section_attribute_labels_split_target_clips_too():
    def clip(section, domain, attrs, i=0):
        name = f"/d/fan/section_{section:02d}_{domain}_train_normal_{i:04d}{'_' + attrs if attrs else ''}.wav"
        return Clip(Path(name), "fan", section, domain, "train", "normal", attributes_raw=attrs)

    clips = [clip(0, "source", "a1"), clip(0, "source", "a2"), clip(0, "target", "b1"), clip(0, "target", "b2"),
             clip(1, "source", ""), clip(1, "target", "")]
    ids, classes, c2s = make_labels(clips, "section_attribute")
    assert classes == ["fan/section_00/source/a1", "fan/section_00/source/a2", "fan/section_00/target/b1",
                       "fan/section_00/target/b2", "fan/section_01/source", "fan/section_01/target"]
    assert ids.tolist() == [0, 1, 2, 3, 4, 5] and c2s == [0, 0, 0, 0, 1, 1]


def test_trainable_subcluster_centres_with_fixed_scale():
    head = build_head("subcluster_adacos", 6, 3, {"n_subclusters": 4, "trainable_centres": True,
                                                   "adaptive_scale": False})
    assert float(head.scale) == pytest.approx(math.sqrt(2) * math.log(3 * 4 - 1))
    before = head.centres.detach().clone()
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    head.train()
    loss = head.loss(torch.randn(8, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    loss.backward()
    opt.step()
    assert not torch.equal(before, head.centres.detach())
    assert float(head.scale) == pytest.approx(math.sqrt(2) * math.log(11))


# --- training, extraction, checkpoints ------------------------------------------------------------------
def test_tiny_training_reduces_the_loss_and_checkpoint_round_trip(tmp_path):
    clips, waves = tone_set(n_source=12)
    conf = tiny_conf(epochs=8, val_fraction=0.0, labels="section_domain", target_oversample=2,
                     optimizer={"name": "adamw", "lr": 1e-2})
    ckpt_path = train_extractor(clips, waves, conf, {}, tmp_path, progress=False)
    rows = [r.split(",") for r in (tmp_path / "train_log.csv").read_text().splitlines()[1:]]
    losses = [float(r[1]) for r in rows]
    assert len(losses) == 8 and losses[-1] < 0.6 * losses[0], losses
    meta = read_checkpoint(ckpt_path)["meta"]
    assert meta["input"] == "waveform" and meta["input_samples"] == 2000
    assert meta["classes"] == ["fan/section_00/source", "fan/section_00/target", "fan/section_01/source",
                               "fan/section_01/target"]

    test_clip = Clip(Path("/data/fan/test/section_01_source_test_anomaly_0000.wav"), "fan", 1, "source", "test",
                     "anomaly")
    waves.waves[str(test_clip.path)] = np.random.default_rng(1).normal(0, 0.1, 5200).astype(np.float32)  # 3 crops
    all_clips = clips + [test_clip]
    emb, scores = extract(ckpt_path, all_clips, waves, batch_size=5, progress=False)
    assert emb.shape == (len(all_clips), 12) and np.isfinite(scores).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    emb2, scores2 = extract(ckpt_path, all_clips, waves, batch_size=64, progress=False)
    np.testing.assert_allclose(emb2, emb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores2, scores, rtol=1e-5, atol=1e-7)

    # by hand: the mean of the normalised crop embeddings, normalised; OE = mean cosine distance
    model, _ = load_checkpoint(ckpt_path)
    crops = torch.from_numpy(waveform_windows(waves.waves[str(test_clip.path)], 2000)).unsqueeze(1)
    assert crops.shape == (3, 1, 2000)
    with torch.no_grad():
        e = torch.nn.functional.normalize(model.embed(crops), dim=1)
        own = model.head.centres[4:]  # section 01 owns classes 2 and 3, 2 sub-clusters each
        cos = e @ torch.nn.functional.normalize(own, dim=1).T
    mean = e.mean(0)
    np.testing.assert_allclose(emb[-1], (mean / mean.norm()).numpy(), rtol=1e-5, atol=1e-6)
    assert scores[-1] == pytest.approx(float((1 - cos.max(dim=1).values).mean()), rel=1e-5)

    # the network tells the sections apart: training clips lie nearer their own section's centres than
    # the other section's
    model.head.eval()
    with torch.no_grad():
        probs = model.head.class_probabilities(torch.from_numpy(emb[:len(clips)]))
    section_prob = probs.view(len(clips), 2, 2).sum(dim=2)
    assert (section_prob.argmax(dim=1).numpy() == np.array([c.section for c in clips])).mean() > 0.9


def test_resume_gives_identical_weights_with_mixup(tmp_path):
    clips, waves = tone_set(n_source=4, n_target=1)
    conf = tiny_conf(epochs=2, mixup=1.0, target_oversample=2)
    full = train_extractor(clips, waves, conf, {}, tmp_path / "full", progress=False)

    train_interrupted(train_extractor, clips, waves, conf, {}, tmp_path / "resumed", progress=False, after_epoch=0)
    resumed = train_extractor(clips, waves, conf, {}, tmp_path / "resumed", progress=False)
    a, b = read_checkpoint(full)["model"], read_checkpoint(resumed)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_channels_last_is_ignored_for_waveform_input():
    """``extractor.channels_last`` (default on) applies to log-mel inputs; a waveform network keeps NCHW."""
    conf = ExtractorSettings.parse(tiny_conf(), where="extractor")
    assert conf.channels_last
    model = build_model(conf, n_classes=3)
    assert not model.channels_last
    assert all(p.is_contiguous() for p in model.parameters())
