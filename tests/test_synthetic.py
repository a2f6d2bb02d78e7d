"""The built-in synthetic data set: layout, format, determinism, difficulty, errors."""

from __future__ import annotations

import csv
import json
import resource
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from hybrid_asd.data import synthetic
from hybrid_asd.data.names import parse_clip_path
from hybrid_asd.data.synth.dsp import Ctx
from hybrid_asd.data.synth.machines import MODELS
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
        assert [k for k, _ in clip.attributes] == ["spd", "load", "mic"]
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
    assert (meta["preset"], meta["seed"], meta["version"]) == ("tiny", 0, "2.2.0")
    assert synthetic.SYNTH_VERSION == "2.2.0"
    with open(tiny_dir / "synthetic_clips.csv", newline="") as fh:
        rows = {r["path"]: r for r in csv.DictReader(fh)}
    assert len(rows) == TINY.n_clips()
    for path in _wavs(tiny_dir):
        clip = parse_clip_path(path)
        section = meta["machines"][clip.machine]["sections"][f"{clip.section:02d}"]
        cond = section[clip.domain]
        attrs = clip.attribute_dict
        unit = section["spd_unit"]
        assert int(attrs["spd"].removesuffix(unit)) in cond["spd"]
        assert int(attrs["load"]) in cond["load"]
        assert int(attrs["mic"]) in cond["mic"]
        row = rows[path.relative_to(tiny_dir).as_posix()]
        assert row["noise"] in cond["noise"], "the background comes from the domain's environments"
        assert bool(row["anomaly_kind"]) == (clip.label == "anomaly"), "every anomaly records its fault kind"
    shifts = {s["shift"] for m in meta["machines"].values() for s in m["sections"].values()}
    assert shifts <= {"speed", "load", "noise"} and len(shifts) >= 2


def test_source_domain_has_attributes_with_two_or_three_values():
    plan = synthetic.plan_section(0, "fan", 0)
    source = plan["source"]
    assert (len(source["spd"]), len(source["load"]), len(source["mic"])) == (3, 2, 2)
    assert len(set(source["spd"])) == 3 and sorted(source["spd"]) == source["spd"]
    # set points are a few to ~12 % apart, so speed is a nuisance inside a section, not a section label
    assert 1.06 < source["spd"][2] / source["spd"][1] < 1.15


def test_sections_are_variants_of_one_product_platform():
    """Sections share the platform's design (counts, resonances within a few per cent), unlike v1's
    independent products: telling them apart needs fine structure."""
    for machine in synthetic.MACHINE_TYPES:
        platform = synthetic.plan_factory(0, machine)["platform"]
        model = synthetic.MODELS[machine]
        for section in range(3):
            product = synthetic.plan_section(0, machine, section)["product"]
            assert set(product) == set(platform)
            for key, value in platform.items():
                if isinstance(value, int) and key != "spd_base":
                    assert product[key] == value, (machine, key)  # blades, teeth, vanes ... stay
            for key in model.variation["resonances"]:
                ratio = np.array([p[0] for p in product[key]]) / np.array([p[0] for p in platform[key]])
                assert np.all(np.abs(np.log(ratio)) < 0.08), (machine, key, ratio)
            assert abs(product["spd_base"] / platform["spd_base"] - 1.0) <= 0.03  # +-2 %, then rounded to a set-point step


def test_structural_fault_helpers():
    from hybrid_asd.data.synth.machines import detune, reshape_profile

    modes = [[1000.0, 10.0, 1.0], [2500.0, 20.0, 0.5]]
    moved = detune(modes, np.array([-0.05, 0.02]), q_scale=0.5)
    assert [round(f, 6) for f, _, _ in moved] == [950.0, 2550.0]
    assert [q for _, q, _ in moved] == [5.0, 10.0]
    ctx = Ctx(np.random.default_rng(0), 100, 16000)
    amps = np.ones(6)
    changed = reshape_profile(ctx, amps, 1.0, 8.0)
    change_db = np.abs(20 * np.log10(changed))
    assert np.all(change_db >= 0.4 * 8.0 - 1e-9) and np.all(change_db <= 8.0 + 1e-9)
    assert np.array_equal(reshape_profile(ctx, amps, 0.0, 8.0), amps)


@pytest.mark.parametrize("machine, key", [("fan", "modes"), ("gearbox", "modes"), ("pump", "modes")])
def test_a_faulty_unit_drifts_from_its_section_by_severity(machine, key):
    """Every fault moves the unit's fine structure (resonances, harmonic profile, gains, depths) by the
    type's drift x severity times the between-section spread (FAULT_DRIFT; the tonal types' own
    TONAL_FAULT_DRIFT since generator 2.2.0); counts and the base rate stay."""
    from hybrid_asd.data.synth import machines as mm

    model = MODELS[machine]
    drift = {"fan": mm.FAULT_DRIFT, "gearbox": mm.TONAL_FAULT_DRIFT, "pump": mm.TONAL_FAULT_DRIFT}[machine]
    assert drift == (1.0 if machine == "fan" else 3.0)
    product = synthetic.plan_section(0, machine, 0)["product"]
    for severity in (0.25, 1.0):
        logs = []
        for i in range(400):
            unit = model.faulty_unit(product, np.random.default_rng(i), severity)
            assert unit["spd_base"] == product["spd_base"]
            assert {k: v for k, v in unit.items() if isinstance(v, int)} == {
                k: v for k, v in product.items() if isinstance(v, int)}  # blades, teeth, vanes ... stay
            logs += [np.log(f / g[0]) for (f, _, _), g in zip(unit[key], product[key])]
        expected = drift * severity * mm.VARIANT_RESONANCE_STD
        assert np.std(logs) == pytest.approx(expected, rel=0.15)
    assert model.faulty_unit(product, np.random.default_rng(0), 0.0)[key] == product[key]


def test_normal_clips_never_reach_fault_code(monkeypatch):
    """Normal clips do not draw from fault code, so a change of the faults leaves every normal clip
    (and what is trained on them) as it was: what benchmarks/fault_proxy.py relies on."""
    plan = synthetic.plan_section(0, "valve", 0)

    def refuse(*args, **kwargs):
        raise AssertionError("fault code reached")

    monkeypatch.setattr(MODELS["valve"], "faulty_unit", refuse)
    for split in ("train", "test"):
        synthetic.synthesize_clip(synthetic.ClipTask("valve", 0, "source", split, "normal", 0), plan, 0, 1.0)
    with pytest.raises(AssertionError, match="fault code reached"):
        synthetic.synthesize_clip(synthetic.ClipTask("valve", 0, "source", "test", "anomaly", 0), plan, 0, 1.0)


def test_equaliser_is_a_gentle_peak():
    from hybrid_asd.data.synth import dsp
    from scipy import signal

    sos = dsp.peaking_sos([(1000.0, 3.0, 1.0), (4000.0, -2.0, 2.0)], 16000)
    freqs, h = signal.sosfreqz(sos, worN=[1000.0, 4000.0, 100.0], fs=16000)
    gain_db = 20 * np.log10(np.abs(h))
    assert gain_db[0] == pytest.approx(3.0, abs=0.15) and gain_db[1] == pytest.approx(-2.0, abs=0.15)
    assert abs(gain_db[2]) < 0.3


# --- determinism ---------------------------------------------------------------------------------


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_same_seed_same_bytes_with_two_workers(tiny_dir, tmp_path):
    again = tmp_path / "again"
    children_cpu = _children_cpu_seconds()
    synthetic.generate(again, preset="tiny", seed=0, progress=False, workers=2)
    # the workers are this process's own children (spawn, not a forkserver's), so `time` counts their CPU
    assert _children_cpu_seconds() - children_cpu > 1.0
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


def _render_stats(machine: str, section: int, domain: str, split: str, label: str, indices, seed: int = 0):
    """Mean and std log-mel of clips of one section rendered in memory (2 s, the full mix)."""
    plan = synthetic.plan_section(seed, machine, section)
    feats = []
    for i in indices:
        task = synthetic.ClipTask(machine, section, domain, split, label, i)
        wave, _ = synthetic.synthesize_clip(task, plan, seed=seed, duration=2.0)
        feats.append(_logmel_stats_of(wave))
    return np.stack(feats)


def _logmel_stats_of(wave: np.ndarray, sr: int = 16000) -> np.ndarray:
    """Per-mel mean and std of log-mel (64 mels, n_fft 1024, hop 512) of one clip."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=np.asarray(wave, np.float32), sr=sr, n_fft=1024, hop_length=512, n_mels=64, power=2.0
    )
    logmel = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return np.concatenate([logmel.mean(axis=1), logmel.std(axis=1)])


def test_domain_shift_makes_target_normals_look_anomalous():
    """A source-only model scores target-domain normal clips above source-domain ones.

    Tiny's 6 + 6 test clips per domain are too few for an AUC, so 30 source training clips and
    20 + 20 normal test clips of tiny's sections are rendered in memory. Generator 2.0.0, seed 0:
    shift AUC 0.54-0.84 per section, mean 0.65 (the shift is in speed, load or noise, and the
    source domain itself varies in speed, load, microphone and background; see docs/synthetic.md).
    """
    shift_aucs = []
    for machine in TINY.machines:
        for section in TINY.sections:
            train = _render_stats(machine, section, "source", "train", "normal", range(30))
            source = _render_stats(machine, section, "source", "test", "normal", range(20))
            target = _render_stats(machine, section, "target", "test", "normal", range(20))
            scores = _knn_scores(train, np.concatenate([source, target]))
            shift_aucs.append(roc_auc_score([0] * 20 + [1] * 20, scores))
    assert np.mean(shift_aucs) > 0.6, shift_aucs
    assert min(shift_aucs) > 0.5, shift_aucs


def test_every_fault_kind_changes_the_machines_own_sound():
    """Fidelity of the faults (issue #12, item 3): at full severity every fault kind moves the machine's
    own sound (before background and transfer path) clearly away from its normal clips.

    kNN on log-mel statistics of 5 s renders of section 00 (a valve switches about once a second) (20 normal references, 10 normal and
    10 faulty test renders per kind): seed 0 gives AUC 0.93-1.0 per kind at severity 1.0.
    """
    for machine in TINY.machines:
        model = MODELS[machine]
        plan = synthetic.plan_section(0, machine, 0)
        product = plan["product"]
        factor = plan["source"]["spd"][1] / product["spd_base"]
        load = plan["source"]["load"][0]

        def render(kind, index: int) -> np.ndarray:
            rng = np.random.default_rng([0, index, model.anomaly_kinds.index(kind) + 1 if kind else 0])
            return _logmel_stats_of(model.render(Ctx(rng, 80000, 16000), product, factor, load, kind, 1.0))

        train = np.stack([render(None, i) for i in range(20)])
        normal = np.stack([render(None, 100 + i) for i in range(10)])
        for kind in model.anomaly_kinds:
            faulty = np.stack([render(kind, 200 + i) for i in range(10)])
            auc = roc_auc_score([0] * 10 + [1] * 10, _knn_scores(train, np.concatenate([normal, faulty])))
            assert auc >= 0.8, (machine, kind, auc)


def test_log_mel_statistics_are_no_shortcut_in_the_mix():
    """Fidelity target F4 on tiny: in the mixed clips (background, transfer paths, attributes), kNN on
    log-mel statistics from 30 source clips finds anomalies only weakly, as on real DCASE data.

    30 training and 30 + 30 test clips (source domain, 2 s) per section of tiny, rendered in
    memory. Generator 2.1.0, seed 0: AUC 0.46-0.66, mean 0.55 (2.0.0: 0.39-0.57, mean 0.50; generator
    1.0.0 on mean log-mel: 0.58-0.66); the demo-size AE reaches about 0.7 on the source domain
    (docs/synthetic.md).
    """
    aucs = []
    for machine in TINY.machines:
        for section in TINY.sections:
            train = _render_stats(machine, section, "source", "train", "normal", range(30))
            normal = _render_stats(machine, section, "source", "test", "normal", range(30))
            faulty = _render_stats(machine, section, "source", "test", "anomaly", range(30))
            aucs.append(roc_auc_score([0] * 30 + [1] * 30, _knn_scores(train, np.concatenate([normal, faulty]))))
    assert np.mean(aucs) < 0.7, aucs
    assert max(aucs) < 0.85, aucs


def test_sections_not_trivially_separable_by_mean_spectrum():
    """Fidelity target F1 (issue #12): sections are variants of one product, so a linear model on mean
    log-mel does not tell them apart perfectly, yet does better than chance (they stay learnable).

    Renders 20 training and 20 test clips of tiny's sections (source domain, normal, 3 s) in memory;
    a logistic regression on standardised mean log-mel gets 0.90 mean accuracy over fan and valve at
    seed 0 (generator 1.0.0: 1.0 for every machine type).
    """
    from sklearn.linear_model import LogisticRegression

    accuracies = []
    for machine in TINY.machines:
        feats: dict[str, list] = {"train": [], "test": []}
        labels: dict[str, list] = {"train": [], "test": []}
        for section in TINY.sections:
            plan = synthetic.plan_section(0, machine, section)
            for split in ("train", "test"):
                for i in range(20):
                    task = synthetic.ClipTask(machine, section, "source", split, "normal", i)
                    wave, _ = synthetic.synthesize_clip(task, plan, seed=0, duration=TINY.duration)
                    feats[split].append(_mean_logmel_of(wave))
                    labels[split].append(section)
        scaler = StandardScaler().fit(feats["train"])
        probe = LogisticRegression(max_iter=5000).fit(scaler.transform(feats["train"]), labels["train"])
        accuracies.append(probe.score(scaler.transform(feats["test"]), labels["test"]))
    assert np.mean(accuracies) < 0.97, accuracies
    assert min(accuracies) > 0.6, accuracies


# --- errors and overwrite ------------------------------------------------------------------------


def test_two_channel_clips_hold_both_microphones_at_once(tmp_path):
    """``channels=2``: stereo PCM16 clips, near microphone left and far right (as DCASE 2026), the same
    moment heard twice (strongly correlated channels, the far one quieter), no ``mic`` attribute."""
    out = tmp_path / "stereo"
    summary = synthetic.generate(out, preset="tiny", machines=["fan"], sections=1, n_source_train=2,
                                 n_target_train=1, n_test_per_class=1, channels=2, progress=False)
    wavs = _wavs(out)
    assert summary.n_clips == len(wavs) == 2 + 1 + 4
    record = json.loads((out / "synthetic.json").read_text())
    assert record["settings"]["channels"] == 2
    for path in wavs:
        info = sf.info(str(path))
        assert (info.channels, info.samplerate, info.subtype) == (2, 16000, "PCM_16")
        clip = parse_clip_path(path)
        assert [key for key, _ in clip.attributes] == ["spd", "load"], path.name
        wave, _ = sf.read(path, dtype="float64")
        near, far = wave[:, 0], wave[:, 1]
        assert np.corrcoef(near, far)[0, 1] > 0.3, path.name
        assert np.sqrt(np.mean(far**2)) < np.sqrt(np.mean(near**2)), path.name
    rows = list(csv.DictReader(open(out / "synthetic_clips.csv")))
    assert {r["mic"] for r in rows} == {""}


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
        ({"channels": 3}, "channels"),
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
