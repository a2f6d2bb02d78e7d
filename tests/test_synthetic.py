"""The built-in synthetic data set: layout, format, determinism, difficulty, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from hybrid_asd.data import synthetic
from hybrid_asd.data.names import parse_clip_path
from hybrid_asd.errors import ConfigError, DataError

TINY = synthetic.PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    summary = synthetic.generate(out, preset="tiny", seed=0, progress=False)
    assert summary.n_clips == TINY.n_clips()
    return out


def _stem(path: Path) -> str:
    """``section_01_source_train_normal_0000``: the name without its attributes."""
    return "_".join(path.name.split("_")[:6])


def _wavs(root: Path) -> list[Path]:
    return sorted(root.rglob("*.wav"))


def _mean_logmel_of(wave: np.ndarray, sr: int = 16000) -> np.ndarray:
    """Mean log-mel (128 mels, n_fft 1024, hop 512) of one clip."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=np.asarray(wave, np.float32), sr=sr, n_fft=1024, hop_length=512, n_mels=128, power=2.0
    )
    return 10.0 * np.log10(np.maximum(mel, 1e-10)).mean(axis=1)


def _mean_logmel(path: Path) -> np.ndarray:
    wave, sr = sf.read(path, dtype="float32")
    return _mean_logmel_of(wave, sr)


@pytest.fixture(scope="module")
def tiny_features(tiny_dir) -> tuple[list, np.ndarray]:
    clips = [parse_clip_path(p) for p in _wavs(tiny_dir)]
    return clips, np.stack([_mean_logmel(c.path) for c in clips])


# --- layout and format ---------------------------------------------------------------------------


def test_layout_names_and_format(tiny_dir):
    paths = _wavs(tiny_dir)
    assert len(paths) == TINY.n_clips()
    per_section = {"train": TINY.n_source_train + TINY.n_target_train, "source_test": 2 * TINY.n_test_per_class}
    per_section["target_test"] = per_section["source_test"]
    for machine in TINY.machines:
        for folder, n in per_section.items():
            assert len(list((tiny_dir / machine / folder).glob("*.wav"))) == n * len(TINY.sections)
    for path in paths:
        clip = parse_clip_path(path)
        assert clip.scheme == "dcase2021"
        assert clip.machine in TINY.machines and clip.section in TINY.sections
        expected = f"section_{clip.section:02d}_{clip.domain}_{clip.split}_{clip.label}_{clip.index:04d}_"
        assert path.name.startswith(expected)
        assert [k for k, _ in clip.attributes] == ["spd", "load", "noise"]
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        assert info.frames == int(TINY.duration * 16000)
    # target training clips: exactly n_target_train per section, numbered 0000..
    target_train = [p for p in paths if "_target_train_" in p.name and p.parts[-3] == "fan"]
    assert sorted({_stem(p) for p in target_train}) == sorted(
        f"section_{s:02d}_target_train_normal_{i:04d}" for s in TINY.sections for i in range(TINY.n_target_train)
    )
    assert not [p for p in tiny_dir.rglob(".*")], "temporary files left behind"


def test_metadata_matches_names(tiny_dir):
    meta = json.loads((tiny_dir / "synthetic.json").read_text())
    assert (meta["preset"], meta["seed"], meta["version"]) == ("tiny", 0, synthetic.SYNTH_VERSION)
    for path in _wavs(tiny_dir):
        clip = parse_clip_path(path)
        section = meta["machines"][clip.machine]["sections"][f"{clip.section:02d}"]
        cond = section[clip.domain]
        attrs = clip.attribute_dict
        unit = section["spd_unit"]
        assert int(attrs["spd"].removesuffix(unit)) in cond["spd"]
        assert int(attrs["load"]) in cond["load"]
        assert attrs["noise"] == cond["noise"]
    shifts = {s["shift"] for m in meta["machines"].values() for s in m["sections"].values()}
    assert shifts <= {"speed", "load", "noise"} and len(shifts) >= 2
    rows = (tiny_dir / "synthetic_clips.csv").read_text().splitlines()
    assert len(rows) == TINY.n_clips() + 1
    anomaly_rows = [r for r in rows[1:] if "_anomaly_" in r]
    assert all(r.split(",")[11] for r in anomaly_rows), "every anomaly records its fault kind"


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_same_bytes_with_two_workers(tiny_dir, tmp_path):
    again = tmp_path / "again"
    synthetic.generate(again, preset="tiny", seed=0, progress=False, workers=2)
    first, second = _wavs(tiny_dir), _wavs(again)
    assert [p.relative_to(tiny_dir) for p in first] == [p.relative_to(again) for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert (tiny_dir / "synthetic.json").read_bytes() == (again / "synthetic.json").read_bytes()


def test_subset_gives_same_clips_and_other_seed_differs(tiny_dir, tmp_path):
    small = dict(sections=[1], n_source_train=2, n_target_train=1, n_test_per_class=1, progress=False)
    subset = tmp_path / "subset"
    synthetic.generate(subset, preset="tiny", seed=0, machines=["valve"], **small)
    for path in _wavs(subset):
        twin = tiny_dir / path.relative_to(subset)
        assert twin.is_file() and twin.read_bytes() == path.read_bytes(), path.name
    other = tmp_path / "other"
    synthetic.generate(other, preset="tiny", seed=1, machines=["valve"], **small)
    for path in _wavs(other):
        twins = list((tiny_dir / path.relative_to(other).parent).glob(_stem(path) + "_*"))
        assert len(twins) == 1 and twins[0].read_bytes() != path.read_bytes()


# --- difficulty: domain shift and detectability --------------------------------------------------


def _knn_scores(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    scaler = StandardScaler().fit(train)
    nn = NearestNeighbors(n_neighbors=1).fit(scaler.transform(train))
    return nn.kneighbors(scaler.transform(test))[0][:, 0]


def _select(clips, **want) -> np.ndarray:
    return np.array([all(getattr(c, k) == v for k, v in want.items()) for c in clips])


def test_domain_shift_makes_target_normals_look_anomalous(tiny_features):
    clips, feats = tiny_features
    shift_aucs = []
    for machine in TINY.machines:
        for section in TINY.sections:
            train = feats[_select(clips, machine=machine, section=section, split="train", domain="source")]
            normal = _select(clips, machine=machine, section=section, split="test", label="normal")
            scores = _knn_scores(train, feats[normal])
            is_target = np.array([c.domain == "target" for c, keep in zip(clips, normal) if keep])
            shift_aucs.append(roc_auc_score(is_target, scores))
    # a source-only model scores target normals above source normals in every section
    assert min(shift_aucs) > 0.6, shift_aucs
    assert np.mean(shift_aucs) > 0.8, shift_aucs


def test_anomalies_detectable_but_not_trivially():
    """Source-domain kNN on mean log-mel beats chance clearly, yet stays far from perfect.

    Tiny's 6 + 6 test clips per domain are too few to measure an AUC, so this renders more
    clips of tiny's sections in memory (30 training, 30 + 30 test, 2 s). Seeds 0-3 give mean
    AUCs of 0.58-0.66 here; the demo preset, with 200 training clips, about 0.7 (docs/synthetic.md).
    """
    aucs = []
    for machine in TINY.machines:
        for section in TINY.sections:
            plan = synthetic.plan_section(0, machine, section)

            def feature(split: str, label: str, index: int) -> np.ndarray:
                task = synthetic.ClipTask(machine, section, "source", split, label, index)
                wave, _ = synthetic.synthesize_clip(task, plan, seed=0, duration=2.0)
                return _mean_logmel_of(wave)

            train = np.stack([feature("train", "normal", i) for i in range(30)])
            test = np.stack([feature("test", label, i) for label in ("normal", "anomaly") for i in range(30)])
            aucs.append(roc_auc_score([0] * 30 + [1] * 30, _knn_scores(train, test)))
    assert 0.58 < np.mean(aucs) < 0.9, aucs  # no preset where everything scores 1.0
    assert max(aucs) < 0.95, aucs


# --- errors and overwrite ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"machines": ["fan", "drill"]}, "'drill'"),
        ({"preset": "huge"}, "'huge'"),
        ({"n_source_train": 0}, "n_source_train"),
        ({"n_test_per_class": 0}, "n_test_per_class"),
        ({"sections": []}, "sections"),
        ({"n_cats": 3}, "n_cats"),
        ({"duration": 0.0}, "duration"),
    ],
)
def test_bad_arguments_raise_config_error(tmp_path, kwargs, message):
    args = {"preset": "tiny", **kwargs}
    with pytest.raises(ConfigError, match=message):
        synthetic.generate(tmp_path / "out", progress=False, **args)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_non_empty_folder_needs_overwrite(tmp_path):
    out = tmp_path / "data"
    stale = out / "fan" / "train" / "section_07_source_train_normal_0000_spd_1rpm_load_0_noise_A.wav"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    keep = out / "notes.txt"
    keep.write_text("mine")
    small = dict(machines=["fan"], sections=1, n_source_train=1, n_target_train=0, n_test_per_class=1, progress=False)
    with pytest.raises(DataError, match=str(out)):
        synthetic.generate(out, preset="tiny", **small)
    summary = synthetic.generate(out, preset="tiny", overwrite=True, **small)
    assert summary.n_clips == 5 and len(_wavs(out)) == 5
    assert not stale.exists() and keep.read_text() == "mine"


def test_interrupt_leaves_only_complete_files(tmp_path, monkeypatch):
    real = synthetic.synthesize_clip
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "synthesize_clip", flaky)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(out, preset="tiny", machines=["fan"], sections=1, progress=False)
    written = _wavs(out)
    assert len(written) == 3
    assert all(sf.info(str(p)).frames == int(TINY.duration * 16000) for p in written)
    assert not [p for p in out.rglob(".*")]


def test_presets_have_the_documented_sizes():
    full = synthetic.PRESETS["full"]
    assert full.machines == synthetic.MACHINE_TYPES and len(full.machines) == 7
    assert (full.sections, full.n_source_train, full.n_target_train, full.n_test_per_class, full.duration) == (
        (0, 1, 2, 3, 4, 5), 1000, 3, 100, 10.0,
    )  # fmt: skip
    demo = synthetic.PRESETS["demo"]
    assert len(demo.machines) == 3 and len(demo.sections) == 3
    resolved = synthetic.resolve_preset("demo", ["pump"], n_source_train=10, sections=2)
    assert (resolved.machines, resolved.sections, resolved.n_source_train) == (("pump",), (0, 1), 10)
