"""Extractor training, checkpoints, resume, extraction and the pipeline stages (tiny, CPU)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from interrupt import train_interrupted

from hybrid_asd.features.settings import FeatureSettings
from hybrid_asd.data.clips import Clip
from hybrid_asd.errors import DataError, StageError
from hybrid_asd.extractor.checkpoint import load_checkpoint, read_checkpoint
from hybrid_asd.extractor.embed import extract
from hybrid_asd.extractor.train import train_extractor
from hybrid_asd.features.patches import make_patches

torch.set_num_threads(1)

FEATURES = {"patch_frames": 16, "patch_hop": 8}
EPS = sys.float_info.epsilon


class StubFeatures:
    """An in-memory stand-in for FeatureCache (``get_many`` only)."""

    def __init__(self, logmels: dict[str, np.ndarray]):
        self.logmels = logmels

    def get_many(self, paths, progress=True):
        return [self.logmels[str(p)] for p in paths]


def tiny_set(n_sections: int = 2, n_source: int = 8, n_target: int = 2, n_mels: int = 16, frames: int = 40,
             seed: int = 0) -> tuple[list[Clip], StubFeatures]:
    """Sections told apart by a band of raised energy; target clips by a second band."""
    rng = np.random.default_rng(seed)
    clips, mels = [], {}
    for sec in range(n_sections):
        for domain, n in (("source", n_source), ("target", n_target)):
            for i in range(n):
                path = f"/data/fan/train/section_{sec:02d}_{domain}_train_normal_{i:04d}_a_{i % 2}.wav"
                m = rng.normal(size=(n_mels, frames)).astype(np.float32)
                m[4 * sec:4 * sec + 4] += 2.0
                if domain == "target":
                    m[-3:] += 1.5
                clips.append(Clip(Path(path), "fan", sec, domain, "train", "normal", attributes_raw=f"a_{i % 2}"))
                mels[path] = m
    return clips, StubFeatures(mels)


def tiny_conf(**overrides):
    conf = {"backbone": {"name": "tiny_cnn", "conf": {}}, "head": {"name": "softmax", "conf": {}},
            "embedding_dim": 8, "epochs": 1, "batch_size": 8, "optimizer": {"name": "adam", "lr": 1e-2}}
    conf.update(overrides)
    return conf


def _patches(logmel):
    return torch.from_numpy(make_patches(logmel, 16, 8)).unsqueeze(1)


# --- training + extraction ---------------------------------------------------------------------
def test_train_one_epoch_checkpoint_and_softmax_scores_by_hand(tmp_path):
    clips, feats = tiny_set()
    ckpt_path = train_extractor(clips, feats, tiny_conf(), FEATURES, tmp_path, progress=False)
    assert ckpt_path == tmp_path / "checkpoint.pt" and not (tmp_path / "train_state.pt").exists()
    raw = torch.load(ckpt_path, weights_only=True)
    assert set(raw) == {"model", "config", "meta"}
    meta = raw["meta"]
    assert meta["classes"] == ["fan/section_00", "fan/section_01"] and meta["sections"] == meta["classes"]
    assert meta["class_to_section"] == [0, 1] and meta["seed"] == 0 and len(meta["data_fingerprint"]) == 16
    assert {"torch", "timm", "numpy"} <= set(meta["versions"])
    assert raw["config"]["extractor"]["backbone"]["name"] == "tiny_cnn" and raw["config"]["features"] == FeatureSettings.parse(FEATURES).to_dict()
    assert len(meta["val_paths"]) == 2  # round(10 * 0.1) = 1 clip per section
    assert all(not p.startswith("/") and p.startswith("fan/train/") for p in meta["val_paths"])  # data-root relative
    log_lines = (tmp_path / "train_log.csv").read_text().splitlines()
    assert log_lines[0] == "epoch,train_loss,train_acc,val_loss,val_acc,val_target_acc,seconds,lr"
    assert len(log_lines) == 2
    assert all(math.isfinite(float(v)) for v in log_lines[1].split(",")[1:5])

    test_clip = Clip(Path("/data/fan/test/section_01_source_test_anomaly_0000.wav"), "fan", 1, "source", "test",
                     "anomaly")
    feats.logmels[str(test_clip.path)] = np.random.default_rng(5).normal(size=(16, 56)).astype(np.float32)
    all_clips = clips + [test_clip]
    emb, scores = extract(ckpt_path, all_clips, feats, batch_size=7, progress=False)
    assert emb.shape == (len(all_clips), 8) and emb.dtype == np.float32 and scores.shape == (len(all_clips),)

    # by hand: mean over patches of log(max(1 - p, eps)) - log(max(p, eps)), p = P(own section)
    model, _ = load_checkpoint(ckpt_path)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], raw["model"][k]) for k in raw["model"]) and loaded.keys() == raw["model"].keys()
    for i in (0, len(clips) - 1, len(all_clips) - 1):
        clip = all_clips[i]
        with torch.no_grad():
            e = model.embed(_patches(feats.logmels[str(clip.path)]))
            logits = model.head(e).double().numpy()
        prob = np.exp(logits - logits.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        p = prob[:, clip.section]
        expected = np.mean(np.log(np.maximum(1 - p, EPS)) - np.log(np.maximum(p, EPS)))
        assert scores[i] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(emb[i], e.mean(0).numpy(), rtol=1e-5, atol=1e-6)

    unknown = Clip(Path("/data/fan/test/section_05_source_test_normal_0000.wav"), "fan", 5, "source", "test", "normal")
    with pytest.raises(DataError, match="section_05"):
        extract(ckpt_path, [unknown], feats, progress=False)


def test_angular_head_embeddings_and_scores(tmp_path):
    clips, feats = tiny_set()
    conf = tiny_conf(head={"name": "subcluster_adacos", "conf": {"n_subclusters": 3}}, labels="section_domain")
    ckpt_path = train_extractor(clips, feats, conf, FEATURES, tmp_path, progress=False)
    emb, scores = extract(ckpt_path, clips, feats, progress=False)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    model, ckpt = load_checkpoint(ckpt_path)
    assert ckpt["meta"]["classes"] == ["fan/section_00/source", "fan/section_00/target",
                                       "fan/section_01/source", "fan/section_01/target"]
    centres = torch.nn.functional.normalize(model.head.centres, dim=1).detach().numpy()
    clip = clips[-1]  # section 01, target: its section owns classes 2 and 3 -> centres 6..11
    with torch.no_grad():
        e = torch.nn.functional.normalize(model.embed(_patches(feats.logmels[str(clip.path)])), dim=1).numpy()
    expected = np.mean(1.0 - (e @ centres[6:12].T).max(axis=1))
    assert scores[-1] == pytest.approx(expected, rel=1e-5)
    unit_mean = e.mean(0) / np.linalg.norm(e.mean(0))
    np.testing.assert_allclose(emb[-1], unit_mean, rtol=1e-5, atol=1e-6)


def test_resume_after_interruption_gives_identical_weights(tmp_path):
    clips, feats = tiny_set()
    conf = tiny_conf(epochs=2, mixup=0.4, max_patches_per_clip=3, target_oversample=2,
                     scheduler={"name": "cosine", "warmup_epochs": 1},
                     head={"name": "arcface", "conf": {}}, labels="section_attribute_domain")
    full = train_extractor(clips, feats, conf, FEATURES, tmp_path / "full", progress=False)

    train_interrupted(train_extractor, clips, feats, conf, FEATURES, tmp_path / "resumed", progress=False,
                      after_epoch=0)
    assert (tmp_path / "resumed" / "train_state.pt").is_file()
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()
    resumed = train_extractor(clips, feats, conf, FEATURES, tmp_path / "resumed", progress=False)

    a, b = read_checkpoint(full)["model"], read_checkpoint(resumed)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log_a = [r.split(",")[:5] for r in (tmp_path / "full" / "train_log.csv").read_text().splitlines()]
    log_b = [r.split(",")[:5] for r in (tmp_path / "resumed" / "train_log.csv").read_text().splitlines()]
    assert log_a == log_b and len(log_a) == 3
    emb_a, sc_a = extract(full, clips, feats, progress=False)
    emb_b, sc_b = extract(resumed, clips, feats, progress=False)
    np.testing.assert_array_equal(emb_a, emb_b)
    np.testing.assert_array_equal(sc_a, sc_b)
    # a finished run is not retrained
    mtime = resumed.stat().st_mtime_ns
    train_extractor(clips, feats, conf, FEATURES, tmp_path / "resumed", progress=False)
    assert resumed.stat().st_mtime_ns == mtime


def test_keep_best_val_keeps_the_epoch_with_the_best_validation_accuracy(tmp_path):
    """``keep: best_val``: the checkpoint holds the weights of the first epoch with the highest validation
    accuracy, which equal a run stopped at that epoch (constant rate, per-epoch data streams), also after
    an interruption and resume."""
    import csv as csv_module

    clips, feats = tiny_set()
    conf = tiny_conf(epochs=4, keep="best_val", optimizer={"name": "adam", "lr": 3e-2}, val_fraction=0.3)
    best = train_extractor(clips, feats, conf, FEATURES, tmp_path / "best", progress=False)
    with open(tmp_path / "best" / "train_log.csv", newline="") as fh:
        accs = [float(r["val_acc"]) for r in csv_module.DictReader(fh)]
    assert len(accs) == 4
    epoch = int(np.argmax(accs)) + 1  # the first epoch with the highest accuracy
    stopped = train_extractor(clips, feats, {**conf, "epochs": epoch, "keep": "last"}, FEATURES,
                              tmp_path / "stopped", progress=False)
    a, b = read_checkpoint(best)["model"], read_checkpoint(stopped)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    train_interrupted(train_extractor, clips, feats, conf, FEATURES, tmp_path / "resumed", progress=False,
                      after_epoch=1)
    resumed = read_checkpoint(train_extractor(clips, feats, conf, FEATURES, tmp_path / "resumed",
                                              progress=False))["model"]
    assert all(torch.equal(a[k], resumed[k]) for k in a)


def test_keep_best_val_without_validation_clips_is_a_config_error():
    from hybrid_asd.extractor.settings import ExtractorSettings

    with pytest.raises(ValueError, match="keep: best_val .* needs val_fraction > 0"):
        ExtractorSettings.model_validate(tiny_conf(keep="best_val", val_fraction=0.0))


def test_clip_input_adamw_step_schedule(tmp_path):
    clips, feats = tiny_set()
    feats.logmels[str(clips[0].path)] = np.pad(feats.logmels[str(clips[0].path)], ((0, 0), (0, 9)))
    conf = tiny_conf(input="clip", optimizer={"name": "adamw", "lr": 1e-2, "weight_decay": 0.01},
                     scheduler={"name": "step", "step_size": 1, "gamma": 0.5}, epochs=2, head={"name": "adacos"})
    ckpt_path = train_extractor(clips, feats, conf, FEATURES, tmp_path, progress=False)
    meta = read_checkpoint(ckpt_path)["meta"]
    assert meta["input"] == "clip" and meta["clip_frames"] == 40
    lrs = [float(r.split(",")[7]) for r in (tmp_path / "train_log.csv").read_text().splitlines()[1:]]
    assert lrs == pytest.approx([1e-2, 5e-3])
    emb, scores = extract(ckpt_path, clips, feats, progress=False)  # clips of 49 and 40 frames, whole
    assert emb.shape == (len(clips), 8) and np.isfinite(scores).all()


# --- checkpoint errors -------------------------------------------------------------------------
def test_missing_and_mismatched_checkpoints(tmp_path):
    with pytest.raises(StageError, match=r"not found: .*nothing\.pt"):
        load_checkpoint(tmp_path / "nothing.pt")
    clips, feats = tiny_set(n_source=4, n_target=1)
    ckpt_path = train_extractor(clips, feats, tiny_conf(val_fraction=0.0), FEATURES, tmp_path, progress=False)
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["config"]["extractor"]["embedding_dim"] = 4
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    with pytest.raises(StageError, match=r"bad\.pt: weights do not match"):
        load_checkpoint(bad)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(StageError, match=r"junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(StageError, match="not an extractor checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


# --- pipeline stages on the synthetic tiny preset ---------------------------------------------------
def test_stages_end_to_end_on_tiny_synthetic(tmp_path):
    from hybrid_asd.data import synthetic
    from hybrid_asd.data.clips import read_clip_list
    from hybrid_asd.experiment import Experiment
    from hybrid_asd.pipeline import make_config, run_stage
    from hybrid_asd.scores import ScoreTable

    synthetic.generate(tmp_path / "data", preset="tiny", machines=["fan"], progress=False,
                       n_source_train=6, n_test_per_class=2)
    config = make_config(None, [
        "extractor.backbone.name=tiny_cnn", "extractor.epochs=1", "extractor.embedding_dim=8",
        "extractor.optimizer.lr=0.001", "features.n_mels=32",
    ], data_root=tmp_path / "data", machine="fan")
    exp = Experiment(tmp_path / "exp")
    exp.init(config)
    train, test = run_stage(exp, config, "prepare")
    ckpt = run_stage(exp, config, "train", device="cpu", progress=False)
    assert ckpt == exp.extractor.checkpoint and exp.stage_done("train", config)
    run_stage(exp, config, "extract", device="cpu", progress=False)
    clips = read_clip_list(exp.embedding_clips_path)
    emb = np.load(exp.embeddings_path)
    assert len(clips) == len(train) + len(test) == emb.shape[0] and emb.shape[1] == 8
    table = ScoreTable.from_csv(exp.score_table_path("oe"))
    assert [c.path for c in table.clips] == [c.path for c in clips]
    assert {c.split for c in table.clips} == {"train", "test"} and np.isfinite(table.scores).all()
    # both stages skip once done
    mtimes = [p.stat().st_mtime_ns for p in (ckpt, exp.embeddings_path)]
    assert run_stage(exp, config, "train", device="cpu", progress=False) is None
    assert run_stage(exp, config, "extract", device="cpu", progress=False) is None
    assert mtimes == [p.stat().st_mtime_ns for p in (ckpt, exp.embeddings_path)]



def test_train_machines_add_the_other_types_sections_as_classes(tmp_path, caplog):
    """extractor.train_machines: the valve clips train the fan experiment's network as more classes; only fan
    clips are embedded and scored; the valve experiment reuses that network; "all" names the same types; a
    missing type is an error naming the key."""
    from hybrid_asd.data import synthetic
    from hybrid_asd.data.clips import read_clip_list
    from hybrid_asd.experiment import Experiment
    from hybrid_asd.extractor.checkpoint import read_checkpoint
    from hybrid_asd.extractor.shared import canonical_order, network_key
    from hybrid_asd.extractor.stage import other_machines_training_clips
    from hybrid_asd.pipeline import make_config, run_stage
    from hybrid_asd.scores import ScoreTable

    synthetic.generate(tmp_path / "data", preset="tiny", machines=["fan", "valve"], progress=False,
                       n_source_train=4, n_test_per_class=1)
    base = ["extractor.backbone.name=tiny_cnn", "extractor.epochs=1", "extractor.embedding_dim=8",
            "extractor.max_patches_per_clip=2", "features.n_mels=32"]

    def train(name: str, machines: str) -> tuple[Experiment, dict]:
        config = make_config(None, base + [f"extractor.train_machines={machines}"], data_root=tmp_path / "data",
                             machine="fan")
        exp = Experiment(tmp_path / name)
        exp.init(config)
        run_stage(exp, config, "prepare")
        run_stage(exp, config, "train", device="cpu", progress=False)
        return exp, read_checkpoint(exp.extractor.checkpoint)["meta"]

    exp, meta = train("named", "[valve]")
    fan_sections = sorted({f"fan/{c.section_name}" for c in exp.train_clips()})
    valve_train = [c for c in synthetic_clips(tmp_path / "data", "valve") if c.split == "train"]
    assert meta["sections"] == fan_sections + sorted({f"valve/{c.section_name}" for c in valve_train})
    assert meta["classes"] == meta["sections"]  # labels: section (the default)
    config = exp.load_config()
    run_stage(exp, config, "extract", device="cpu", progress=False)
    clips = read_clip_list(exp.embedding_clips_path)
    assert {c.machine for c in clips} == {"fan"} and len(clips) == len(exp.train_clips()) + len(exp.test_clips())
    assert np.isfinite(ScoreTable.from_csv(exp.score_table_path("oe")).scores).all()

    # the valve experiment lists the same clips with the same settings: it reuses the fan experiment's network
    valve_config = make_config(None, base + ["extractor.train_machines=[fan]"], data_root=tmp_path / "data",
                               machine="valve")
    valve = Experiment(tmp_path / "valve")
    valve.init(valve_config)
    run_stage(valve, valve_config, "prepare")
    with caplog.at_level("INFO", logger="hybrid_asd.extractor.shared"):
        run_stage(valve, valve_config, "train", device="cpu", progress=False)
    assert "reusing the network" in caplog.text
    assert valve.extractor.checkpoint.read_bytes() == exp.extractor.checkpoint.read_bytes()
    assert valve.extractor.train_log.read_text() == exp.extractor.train_log.read_text()
    run_stage(valve, valve_config, "extract", device="cpu", progress=False)
    assert {c.machine for c in read_clip_list(valve.embedding_clips_path)} == {"valve"}
    # what decides the weights is in the key: another seed or a changed training file is another network
    clips = canonical_order(exp.train_clips() + other_machines_training_clips(config))
    key = network_key(config, clips)
    assert network_key(make_config(None, base + ["extractor.train_machines=all"], data_root=tmp_path / "data",
                                   machine="valve"), clips) == key
    assert network_key(make_config(None, base + ["extractor.train_machines=[valve]", "seed=5"],
                                   data_root=tmp_path / "data", machine="fan"), clips) != key
    os.utime(clips[0].path, ns=(1, 1))
    assert network_key(config, clips) != key

    def listed(machines: str) -> list[Path]:
        config = make_config(None, base + [f"extractor.train_machines={machines}"], data_root=tmp_path / "data",
                             machine="fan")
        return [c.path for c in other_machines_training_clips(config)]

    assert listed("all") == listed("[valve]") == [c.path for c in valve_train]
    assert listed("[fan]") == listed("[]") == []  # the own type named: nothing added
    with pytest.raises(DataError, match=r"extractor\.train_machines: .*pumpp"):
        train("missing", "[pumpp]")



def _train_in_process(args: tuple[str, str, str, list[str]]) -> str:
    """One experiment's prepare + train in a spawned process; returns the shared-network log lines."""
    import logging

    from hybrid_asd.experiment import Experiment
    from hybrid_asd.pipeline import make_config, run_stage

    root, machine, exp_dir, overrides = args
    torch.set_num_threads(1)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logging.getLogger("hybrid_asd.extractor.shared").addHandler(Keep())
    logging.getLogger("hybrid_asd.extractor.shared").setLevel(logging.INFO)
    config = make_config(None, overrides, data_root=root, machine=machine)
    exp = Experiment(exp_dir)
    exp.init(config)
    run_stage(exp, config, "prepare")
    run_stage(exp, config, "train", device="cpu", progress=False)
    return "\n".join(records)


def test_experiments_started_together_train_the_shared_network_once(tmp_path):
    """Two machine types' experiments started at the same moment in two processes: one trains the network, the
    other waits on the lock and copies it (the same bytes)."""
    import multiprocessing

    from hybrid_asd.data import synthetic

    synthetic.generate(tmp_path / "data", preset="tiny", machines=["fan", "valve"], progress=False,
                       n_source_train=4, n_test_per_class=1)
    overrides = ["extractor.backbone.name=tiny_cnn", "extractor.epochs=2", "extractor.embedding_dim=8",
                 "extractor.max_patches_per_clip=2", "features.n_mels=32", "extractor.train_machines=all"]
    jobs = [(str(tmp_path / "data"), m, str(tmp_path / m), overrides) for m in ("fan", "valve")]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        logs = pool.map(_train_in_process, jobs)
    assert sorted("kept a copy" in text for text in logs) == [False, True]
    assert sorted("reusing the network" in text for text in logs) == [False, True]
    fan, valve = ((tmp_path / m / "extractor" / "checkpoint.pt").read_bytes() for m in ("fan", "valve"))
    assert fan == valve


def synthetic_clips(root: Path, machine: str) -> list[Clip]:
    from hybrid_asd.data.manifest import scan

    return scan(root, machines=[machine]).clips


@pytest.mark.parametrize("value", ["[fan/x]", "[valve, valve]", "[\"\"]", "some"])
def test_train_machines_bad_values_are_config_errors(value):
    from hybrid_asd.config import ConfigError
    from hybrid_asd.pipeline import make_config

    with pytest.raises(ConfigError, match="train_machines"):
        make_config(None, [f"extractor.train_machines={value}"])


# --- multi-process training (torchrun, gloo) ------------------------------------------------------
DDP_SCRIPT = r'''
import json, os, sys
from pathlib import Path
import numpy as np
import torch
import torch.distributed as dist
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_extractor_train import FEATURES, tiny_conf, tiny_set
from hybrid_asd.extractor.train import train_extractor

out = Path({out!r})
clips, feats = tiny_set()
seen = {{}}
def record(epoch, row):
    seen.update(world=dist.get_world_size(), rank=dist.get_rank(), row=row)
path = train_extractor(clips, feats, tiny_conf(head={{"name": "adacos"}}), FEATURES, out, progress=False,
                       on_epoch_end=record)
(out / f"rank{{seen['rank']}}.json").write_text(json.dumps(seen))
'''


@pytest.mark.slow
def test_torchrun_two_cpu_processes_gloo(tmp_path):
    script = tmp_path / "ddp_train.py"
    out = tmp_path / "out"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["row"] == ranks[1]["row"] | {"seconds": ranks[0]["row"]["seconds"]}  # metrics reduced
    model, ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["meta"]["classes"] == ["fan/section_00", "fan/section_01"]
    assert len((out / "train_log.csv").read_text().splitlines()) == 2
    print(f"torchrun 2 x gloo: {time.perf_counter() - t0:.1f} s")


@pytest.mark.parametrize("mode", ["crops", "clips", "none"])
def test_validation_sees_the_target_domain_of_every_class(mode):
    """3 target clips per class and a 10 % split by clip hold out none of them; 'crops' holds out the
    last window of each (the clips keep their other windows for training), 'clips' one whole clip."""
    from hybrid_asd.extractor.labels import make_labels
    from hybrid_asd.extractor.settings import ExtractorSettings
    from hybrid_asd.extractor.train import build_datasets

    clips, feats = tiny_set(n_source=20, n_target=3)
    logmels = feats.get_many([c.path for c in clips])
    labels, classes, _ = make_labels(clips, "section")
    conf = ExtractorSettings.parse(tiny_conf(target_validation=mode))
    data = build_datasets(clips, logmels, labels, conf, FeatureSettings.parse(FEATURES), seed=0)
    targets = [i for i, c in enumerate(clips) if c.domain == "target"]
    val_target_classes = set() if data.val_target is None else set(data.val_target.labels.tolist())
    if mode == "none":
        assert data.val_target is None and not set(targets) & set(data.val_idx.tolist())
        return
    assert val_target_classes == set(range(len(classes)))  # every class's target domain is validated
    if mode == "crops":
        assert sorted(data.tail_idx.tolist()) == targets and not set(targets) & set(data.val_idx.tolist())
        # every target clip still trains, on all but its last window: 24 of its 40 frames, 2 windows of 16 (hop 8)
        windows = dict(zip(data.train_idx.tolist(), (len(c) for c in data.train.candidates)))
        assert all(windows[i] == 2 for i in targets) and windows[0] == 4
    else:
        moved = sorted(set(targets) & set(data.val_idx.tolist()))
        assert len(moved) == len(classes) and not len(data.tail_idx)


def test_target_validation_crops_with_every_channel_as_an_input_plane():
    """data.channel: all gives (channels, n_mels, T) log-mels; 'crops' cuts the frames (last axis)."""
    from hybrid_asd.extractor.labels import make_labels
    from hybrid_asd.extractor.settings import ExtractorSettings
    from hybrid_asd.extractor.train import build_datasets

    clips, feats = tiny_set(n_source=20, n_target=3)
    logmels = [np.stack([m, m + 1.0]) for m in feats.get_many([c.path for c in clips])]  # two planes
    labels, classes, _ = make_labels(clips, "section")
    conf = ExtractorSettings.parse(tiny_conf(target_validation="crops"))
    data = build_datasets(clips, logmels, labels, conf, FeatureSettings.parse(FEATURES), seed=0)
    targets = [i for i, c in enumerate(clips) if c.domain == "target"]
    assert sorted(data.tail_idx.tolist()) == targets and data.geometry["in_channels"] == 2
    assert set(data.val_target.labels.tolist()) == set(range(len(classes)))
    windows = dict(zip(data.train_idx.tolist(), (len(c) for c in data.train.candidates)))
    assert all(windows[i] == 2 for i in targets) and windows[0] == 4


@pytest.mark.parametrize("mode", ["crops", "clips"])
def test_target_validation_leaves_supplemental_training_clips_whole(mode):
    """DCASE 2025+ supplemental clips used as training clips (data.supplemental.use: train) are
    source-domain clips: 'crops' cuts tails of the real target clips only, 'clips' moves target clips
    only; every class's target domain is still validated."""
    from hybrid_asd.data.names import parse_clip_path
    from hybrid_asd.data.settings import SupplementalSettings
    from hybrid_asd.data.supplemental import as_training_clips
    from hybrid_asd.extractor.labels import make_labels
    from hybrid_asd.extractor.settings import ExtractorSettings
    from hybrid_asd.extractor.train import build_datasets

    clips, feats = tiny_set(n_source=20, n_target=3)
    supplemental = as_training_clips([parse_clip_path(f"/data/fan/supplemental/section_{s:02d}_machine_{i:04d}_.wav")
                                      for s in (0, 1) for i in range(4)], SupplementalSettings(use="train"))
    rng = np.random.default_rng(1)
    for clip in supplemental:
        feats.logmels[str(clip.path)] = rng.normal(size=(16, 40)).astype(np.float32)
    clips = clips + supplemental
    logmels = feats.get_many([c.path for c in clips])
    labels, classes, _ = make_labels(clips, "section")
    conf = ExtractorSettings.parse(tiny_conf(target_validation=mode))
    data = build_datasets(clips, logmels, labels, conf, FeatureSettings.parse(FEATURES), seed=0)
    targets = {i for i, c in enumerate(clips) if c.domain == "target"}
    extra = {i for i, c in enumerate(clips) if c.kind == "machine"}
    assert len(extra) == 8 and all(clips[i].domain == "source" for i in extra)
    assert set(data.val_target.labels.tolist()) == set(range(len(classes)))
    if mode == "crops":
        assert set(data.tail_idx.tolist()) == targets
        windows = dict(zip(data.train_idx.tolist(), (len(c) for c in data.train.candidates)))
        assert all(windows[i] == 4 for i in extra if i in windows)  # whole: 40 frames, 4 windows of 16 (hop 8)
    else:
        moved = set(data.val_idx.tolist()) - set(data.train_idx.tolist())
        assert not len(data.tail_idx) and len(moved & targets) == len(classes)


# --- memory layout (extractor.channels_last) --------------------------------------------------------
def test_channels_last_layout_trains_to_the_same_network_up_to_rounding(tmp_path):
    """The layout is a speed setting: both layouts start from the same weights and take the same steps (float
    rounding apart; a tiny learning rate keeps Adam from amplifying rounding-sized gradients into whole steps), the
    checkpoint of either loads in either layout, and only 4-D weights and inputs move."""
    clips, feats = tiny_set()
    runs = {}
    for layout in (True, False):
        out = tmp_path / f"cl_{layout}"
        conf = tiny_conf(channels_last=layout, optimizer={"name": "adam", "lr": 1e-6})
        path = train_extractor(clips, feats, conf, FEATURES, out, progress=False)
        model, ckpt = load_checkpoint(path)
        assert ckpt["config"]["extractor"]["channels_last"] is layout
        # a convolution with several input planes (one plane is the same in both layouts)
        conv = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1][0]
        assert model.channels_last is layout
        assert conv.is_contiguous(memory_format=torch.channels_last) is layout
        assert conv.is_contiguous() is not layout
        runs[layout] = (path, extract(path, clips, feats, progress=False))
    (emb_nhwc, oe_nhwc), (emb_nchw, oe_nchw) = runs[True][1], runs[False][1]
    np.testing.assert_allclose(emb_nhwc, emb_nchw, rtol=0, atol=1e-4)
    np.testing.assert_allclose(oe_nhwc, oe_nchw, rtol=0, atol=1e-4)
    # a channels-last checkpoint's weights in an NCHW model (and back) give the same embeddings
    nhwc_model, _ = load_checkpoint(runs[True][0])
    ckpt = torch.load(runs[True][0], weights_only=True)
    ckpt["config"]["extractor"]["channels_last"] = False
    torch.save(ckpt, tmp_path / "as_nchw.pt")
    nchw_model, _ = load_checkpoint(tmp_path / "as_nchw.pt")
    assert not nchw_model.channels_last
    x = _patches(feats.get_many([clips[0].path])[0])
    with torch.no_grad():
        torch.testing.assert_close(nhwc_model.embed(x), nchw_model.embed(x), rtol=0, atol=1e-5)

