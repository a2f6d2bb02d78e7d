"""Extractor parts on small tensors: heads, labels, backbones, datasets, config errors."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid_asd.data.clips import Clip
from hybrid_asd.errors import ConfigError, DataError
from hybrid_asd.extractor.backbones import BACKBONES, build_backbone, build_model
from hybrid_asd.extractor.dataset import PatchDataset, patch_starts, stratified_split
from hybrid_asd.extractor.heads import HEADS, build_head
from hybrid_asd.extractor.labels import make_labels, section_names
from hybrid_asd.extractor.settings import ExtractorSettings
from hybrid_asd.extractor.train import lr_factor

torch.set_num_threads(1)

HEAD_NAMES = ["softmax", "arcface", "adacos", "subcluster_adacos"]


def separable_problem(n_per_class: int = 16, n_classes: int = 8, dim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.eye(n_classes, dim)
    x = torch.cat([centres[c] + 0.3 * torch.randn(n_per_class, dim, generator=g) for c in range(n_classes)])
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    return x, y


# --- heads ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", HEAD_NAMES)
@pytest.mark.parametrize("mixup", [False, True])
def test_head_loss_decreases_on_separable_problem(name, mixup):
    torch.manual_seed(0)
    # 8 classes: with very few classes AdaCos's adaptive scale stays small by design
    x, y = separable_problem()
    conf = {"n_subclusters": 2} if name == "subcluster_adacos" else {}
    embedder = torch.nn.Linear(x.shape[1], 8)
    head = build_head(name, 8, 8, conf)
    opt = torch.optim.Adam(list(embedder.parameters()) + [p for p in head.parameters() if p.requires_grad], lr=0.05)
    soft = None
    if mixup:
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
        x = 0.7 * x + 0.3 * x[perm]
        onehot = torch.nn.functional.one_hot(y, 8).float()
        soft = 0.7 * onehot + 0.3 * onehot[perm]
    head.train()
    losses = []
    for _ in range(40):
        loss = head.loss(embedder(x), y, soft)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], (name, losses[0], losses[-1])
    head.eval()
    x_clean, y_clean = separable_problem()
    with torch.no_grad():
        acc = (head.class_probabilities(embedder(x_clean)).argmax(1) == y_clean).float().mean()
    assert acc > 0.9


def test_softmax_baseline_score_by_hand():
    head = build_head("softmax", 2, 3)
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        head.linear.bias.zero_()
    emb = torch.tensor([[2.0, 0.0], [0.0, 1.0], [30.0, 0.0]])
    # logits: [2, 0, -2], [0, 1, -1], [30, 0, -30]
    def p_of(logits, own):
        z = sum(math.exp(v) for v in logits)
        return sum(math.exp(logits[i]) for i in own) / z

    def one_minus_p(logits, own):  # 1 - p without cancellation (p is within 1e-13 of 1 at logit 30)
        return p_of(logits, [i for i in range(len(logits)) if i not in own])

    eps = sys.float_info.epsilon
    expected = []
    for logits in ([2, 0, -2], [0, 1, -1], [30, 0, -30]):
        p, q = p_of(logits, [0]), one_minus_p(logits, [0])
        expected.append(math.log(max(q, eps)) - math.log(max(p, eps)))
    assert expected[0] == pytest.approx(math.log((1 + math.exp(-2)) / math.exp(2)))
    got = head.anomaly_scores(emb, torch.tensor([0, 0, 0]))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)
    # the clip score of the baseline is the mean over its patches
    assert float(got.mean()) == pytest.approx(np.mean(expected), abs=1e-6)
    # a section owning classes 0 and 1: p is their summed probability
    mask = torch.tensor([[True, True, False]] * 3)
    expected2 = [math.log(max(one_minus_p(lg, [0, 1]), eps)) - math.log(p_of(lg, [0, 1]))
                 for lg in ([2, 0, -2], [0, 1, -1], [30, 0, -30])]
    assert expected2[2] == pytest.approx(math.log(eps), abs=1e-9)  # 1 - p = 1e-26 is clamped at eps
    np.testing.assert_allclose(head.anomaly_scores(emb, mask).numpy(), expected2, rtol=1e-6)


def test_angular_scores_are_cosine_distance_to_nearest_own_centre():
    head = build_head("subcluster_adacos", 2, 2, {"n_subclusters": 2})
    with torch.no_grad():  # class 0: centres at 0 and 90 degrees; class 1: 180 and 270 degrees
        head.centres.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    emb = torch.tensor([[1.0, 1.0], [5.0, 0.0], [-1.0, 0.0]])
    got = head.anomaly_scores(emb, torch.tensor([0, 0, 0])).numpy()
    np.testing.assert_allclose(got, [1 - math.cos(math.pi / 4), 0.0, 1.0], atol=1e-6)
    got1 = head.anomaly_scores(emb, torch.tensor([1, 1, 1])).numpy()
    np.testing.assert_allclose(got1, [1 - math.cos(3 * math.pi / 4), 1.0, 0.0], atol=1e-6)


def test_arcface_margin_on_target_logit_only():
    head = build_head("arcface", 2, 2, {"margin": 0.3, "scale": 10.0})
    with torch.no_grad():
        head.centres.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    theta = 0.4
    emb = torch.tensor([[math.cos(theta), math.sin(theta)]])
    logits = head(emb, torch.tensor([0])).detach()
    assert float(logits[0, 0]) == pytest.approx(10 * math.cos(theta + 0.3), abs=1e-5)
    assert float(logits[0, 1]) == pytest.approx(10 * math.cos(math.pi / 2 - theta), abs=1e-5)
    assert float(head(emb)[0, 0].detach()) == pytest.approx(10 * math.cos(theta), abs=1e-5)


def test_adacos_scale_update_matches_formula():
    torch.manual_seed(0)
    head = build_head("adacos", 4, 5)
    s0 = float(head.scale)
    assert s0 == pytest.approx(math.sqrt(2) * math.log(5 - 1))
    emb, y = torch.randn(16, 4), torch.randint(0, 5, (16,))
    cos = head.cosines(emb).detach().double().numpy()
    onehot = np.eye(5)[y.numpy()].astype(bool)
    b_avg = np.mean([np.exp(s0 * cos[i][~onehot[i]]).sum() for i in range(16)])
    theta = np.arccos(cos[onehot])
    expected = math.log(b_avg) / math.cos(min(math.pi / 4, float(torch.median(torch.from_numpy(theta)))))
    head.train()
    head(emb, y)
    assert float(head.scale) == pytest.approx(expected, rel=1e-4)
    head.eval()  # no update outside training
    head(emb, y)
    assert float(head.scale) == pytest.approx(expected, rel=1e-4)


def test_subcluster_centres_fixed_or_trainable():
    fixed = build_head("subcluster_adacos", 4, 3, {"n_subclusters": 4})
    trainable = build_head("subcluster_adacos", 4, 3, {"n_subclusters": 4, "trainable_centres": True})
    assert fixed.centres.shape == (12, 4) and not fixed.centres.requires_grad
    assert trainable.centres.requires_grad
    # logsumexp aggregation: class probability = sum of its sub-clusters' softmax probabilities
    emb = torch.randn(5, 4)
    sub = torch.softmax(float(fixed.scale) * fixed.cosines(emb), dim=1).view(5, 3, 4).sum(2)
    torch.testing.assert_close(fixed.class_probabilities(emb), sub, rtol=1e-5, atol=1e-6)


def test_head_config_errors():
    with pytest.raises(ConfigError, match="unknown head 'cosface'"):
        build_head("cosface", 8, 3)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['margn'\]"):
        build_head("arcface", 8, 3, {"margn": 0.2})
    with pytest.raises(ConfigError, match="n_classes"):
        build_head("softmax", 8, 3, {"n_classes": 4})
    assert set(HEAD_NAMES) <= set(HEADS.names())


# --- backbones -------------------------------------------------------------------------------------
def test_tiny_cnn_shape_and_conf():
    net = build_backbone("tiny_cnn", 12, {"channels": [4, 8, 8]})
    assert net(torch.randn(3, 1, 32, 16)).shape == (3, 12)
    assert "tiny_cnn" in BACKBONES
    with pytest.raises(ConfigError, match="chanels"):
        build_backbone("tiny_cnn", 12, {"chanels": [4]})


@pytest.mark.parametrize("name", ["mobilenetv2_100", "resnet18"])
def test_timm_backbones_offline_one_channel(name):
    net = build_backbone(name, 16, {}).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 64, 32)).shape == (2, 16)
    first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 1


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ConfigError, match="mobilenetv2_100"):
        build_backbone("mobilenetv2_10", 16)
    with pytest.raises(ConfigError, match="unknown backbone 'no_such_net'"):
        build_backbone("no_such_net", 16)
    with pytest.raises(ConfigError, match="drop_ratee"):
        build_backbone("resnet18", 16, {"drop_ratee": 0.1})


def test_extractor_conf_errors():
    def resolve(conf):
        return ExtractorSettings.parse(conf, where="extractor")

    with pytest.raises(ConfigError, match="extractor.epoch'"):
        resolve({"epoch": 3})
    with pytest.raises(ConfigError, match="extractor.optimizer.momentum"):
        resolve({"optimizer": {"momentum": 0.9}})
    with pytest.raises(ConfigError, match="extractor.optimizer.name = 'sgd': must be 'adam' or 'adamw'"):
        resolve({"optimizer": {"name": "sgd"}})
    with pytest.raises(ConfigError, match="extractor.input"):
        resolve({"input": "frames"})
    with pytest.raises(ConfigError, match="extractor.head.name = 'arcfase': unknown head 'arcfase'"):
        resolve({"head": {"name": "arcfase"}})
    with pytest.raises(ConfigError, match=r"extractor.head.conf = .*unknown key\(s\) \['margn'\]"):
        resolve({"head": {"name": "arcface", "conf": {"margn": 0.1}}})
    conf = resolve({"backbone": {"name": "tiny_cnn"}, "head": {"name": "adacos"}, "embedding_dim": 8})
    model = build_model(conf, n_classes=4)
    emb, logits = model(torch.randn(2, 1, 16, 16))
    assert emb.shape == (2, 8) and logits.shape == (2, 4)


def test_lr_schedules():
    assert lr_factor(3, name="none", epochs=10) == 1.0
    assert lr_factor(0, name="cosine", epochs=10, warmup_epochs=1) == pytest.approx(0.5)
    assert lr_factor(1, name="cosine", epochs=11, warmup_epochs=1) == pytest.approx(1.0)
    assert lr_factor(6, name="cosine", epochs=11, warmup_epochs=1) == pytest.approx(0.5)
    assert lr_factor(25, name="step", epochs=30, step_size=10, gamma=0.5) == pytest.approx(0.25)


# --- labels -----------------------------------------------------------------------------------------
def _clip(section: int, domain: str, attrs: str, i: int = 0, machine: str = "fan") -> Clip:
    return Clip(Path(f"/d/{machine}/section_{section:02d}_{domain}_train_normal_{i:04d}_{attrs}.wav"), machine,
                section, domain, "train", "normal", attributes_raw=attrs)


def test_label_schemes():
    clips = [_clip(0, "source", "a1"), _clip(0, "source", "a2"), _clip(1, "source", "a1"),
             _clip(0, "target", "b1"), _clip(0, "target", "b2"), _clip(1, "target", "b3")]
    ids, classes, c2s = make_labels(clips, "section")
    assert classes == ["fan/section_00", "fan/section_01"] and ids.tolist() == [0, 0, 1, 0, 0, 1]
    assert c2s == [0, 1] and section_names(clips) == classes
    ids, classes, c2s = make_labels(clips, "section_domain")
    assert classes == ["fan/section_00/source", "fan/section_00/target", "fan/section_01/source",
                       "fan/section_01/target"]
    assert ids.tolist() == [0, 0, 2, 1, 1, 3] and c2s == [0, 0, 1, 1]
    ids, classes, c2s = make_labels(clips, "section_attribute_domain")
    # source clips split by attribute, the target clips of a section form one class
    assert classes == ["fan/section_00/source/a1", "fan/section_00/source/a2", "fan/section_00/target",
                       "fan/section_01/source/a1", "fan/section_01/target"]
    assert ids.tolist() == [0, 1, 3, 2, 2, 4] and c2s == [0, 0, 0, 1, 1]
    with pytest.raises(ConfigError, match="unknown extractor.labels scheme 'machine'"):
        make_labels(clips, "machine")


# --- data -----------------------------------------------------------------------------------------
def test_patch_windows_match_make_patches():
    from hybrid_asd.features.patches import make_patches

    rng = np.random.default_rng(0)
    mels = [rng.normal(size=(8, t)).astype(np.float32) for t in (40, 23, 16)]
    for m in mels:
        assert len(patch_starts(m.shape[1], 16, 4)) == len(make_patches(m, 16, 4))
    ds = PatchDataset(mels, np.array([0, 1, 2]), 16, 4)
    x, y = ds.__getitems__(range(len(ds)))
    expected = np.concatenate([make_patches(m, 16, 4) for m in mels])
    np.testing.assert_array_equal(x[:, 0].numpy(), expected)
    assert y.tolist() == [0] * 7 + [1] * 2 + [2]
    with pytest.raises(DataError, match="short.wav"):
        PatchDataset([mels[0], mels[1][:, :10]], np.array([0, 1]), 16, 4, names=["a.wav", "short.wav"])


def test_patch_subsampling_and_oversampling():
    mels = [np.zeros((4, 50), np.float32), np.ones((4, 50), np.float32)]
    ds = PatchDataset(mels, np.array([0, 1]), 10, 2, repeats=np.array([1, 3]), max_per_clip=5, seed=3)
    assert len(ds) == 5 + 15
    ds.set_epoch(1)
    first = ds.starts.copy()
    ds.set_epoch(2)
    assert len(ds) == 20 and not np.array_equal(first, ds.starts)
    ds.set_epoch(1)
    np.testing.assert_array_equal(first, ds.starts)
    assert (ds.item_labels == 1).sum() == 15


def test_stratified_split_is_by_clip_and_class():
    labels = np.array([0] * 20 + [1] * 10 + [2] * 3)
    train, val = stratified_split(labels, 0.2, np.random.default_rng(0))
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(labels)
    assert np.bincount(labels[val], minlength=3).tolist() == [4, 2, 1]
    _, val = stratified_split(np.array([0, 0, 1]), 0.5, np.random.default_rng(0))
    assert len(val) == 1  # a one-clip class keeps its clip for training
