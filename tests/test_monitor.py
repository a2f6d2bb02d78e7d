"""Scoring new recordings with a trained system (``hybrid-asd predict``, ``load_system``, ``export``):
equal to the stages on the experiment's own test clips, unknown domains, windows of long recordings,
a watched folder, the portable system folder and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hybrid_asd.cli import main
from hybrid_asd.config import load_config
from hybrid_asd.data.names import parse_clip_path
from hybrid_asd.errors import ConfigError, DataError
from hybrid_asd.evaluation.submission import read_submission_dir
from hybrid_asd.evaluation.thresholds import section_thresholds
from hybrid_asd.experiment import Experiment
from hybrid_asd.monitor.inputs import plan_windows
from hybrid_asd.monitor.members import Candidate, rename_weights, resolve
from hybrid_asd.monitor.records import ClipScore, MemberScore, RecordWriter, read_records
from hybrid_asd.pipeline import run_stages
from hybrid_asd.scores import ScoreTable

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "hybrid_asd" / "configs"
TINY = ["extractor.epochs=1", "extractor.max_patches_per_clip=4", "extractor.batch_size=32"]


# --- fixtures: the demo's two configs on tiny data, trained once for the module ------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Experiment]:
    from hybrid_asd.data.synthetic import generate

    base = tmp_path_factory.mktemp("monitor")
    data = base / "data"
    generate(data, preset="tiny", seed=3, machines=["fan"], progress=False)
    exps = {}
    for name, extra in (("demo_hybrid", ["extractor.target_oversample=1"]), ("demo_baselines", ["detectors.0.conf.epochs=1"])):
        config = load_config(CONFIG_DIR / f"{name}.yaml", [f"data.root={data}", "data.machine=fan", "seed=1"] + TINY + extra)
        exps[name] = Experiment(base / "exp" / name)
        run_stages(exps[name], config, progress=False)
    return exps


@pytest.fixture(scope="module")
def hybrid(trained) -> Experiment:
    return trained["demo_hybrid"]


@pytest.fixture(scope="module")
def system(hybrid):
    from hybrid_asd.monitor.system import load_system

    return load_system(hybrid.root)


def by_path(table: ScoreTable) -> dict[str, float]:
    return {str(c.path): float(s) for c, s in zip(table.clips, table.scores)}


def data_root(exp: Experiment) -> Path:
    return Path(exp.load_config().data.root) / "fan"


def predict(argv: list[str]) -> int:
    return main(["--log-level", "WARNING", "predict", "--no-progress", *argv])


# --- equal to the stages ---------------------------------------------------------------------------
def test_predict_on_the_test_clips_equals_the_score_and_fuse_stages(hybrid, tmp_path):
    root = data_root(hybrid)
    out = tmp_path / "scores.csv"
    assert predict(["--exp", str(hybrid.root), str(root / "source_test"), str(root / "target_test"),
                    "--out", str(out)]) == 0
    records = {r.path: r for r in read_records(out)}
    test = hybrid.test_clips()
    assert sorted(records) == sorted(str(c.path) for c in test)
    for member in ("oe", "knn", "mahalanobis"):
        stage = by_path(ScoreTable.from_csv(hybrid.score_table_path(member)).select(split="test"))
        assert {p: r.members[member].raw for p, r in records.items()} == stage  # exactly
    assert {p: r.score for p, r in records.items()} == by_path(ScoreTable.from_csv(hybrid.fusion.fused).select(split="test"))
    decisions = read_submission_dir(hybrid.fusion.submission).decisions
    for clip in test:
        record = records[str(clip.path)]
        assert (record.section, record.domain, record.label) == (clip.section, clip.domain, clip.label)
        assert record.decision == decisions[(clip.machine, clip.section, clip.domain)][clip.name]
    assert not (tmp_path / "scores.csv.partial").exists()


def test_several_experiments_fuse_with_a_weights_file_as_fuse_does(trained, tmp_path):
    from hybrid_asd.ensemble.stage import run_fuse
    from hybrid_asd.monitor.system import load_system

    hybrid, baselines = trained["demo_hybrid"], trained["demo_baselines"]
    fused = run_fuse([baselines.score_table_path("ae"), hybrid.score_table_path("knn"),
                      hybrid.score_table_path("mahalanobis")], tmp_path / "cross", rule="rank_mean")
    system = load_system([baselines.root, hybrid.root], weights=fused["weights"])
    assert system.member_names == ["demo_baselines/ae", "demo_hybrid/knn", "demo_hybrid/mahalanobis"]
    test = hybrid.test_clips()
    scores = system.score([c.path for c in test])
    expected = by_path(ScoreTable.from_csv(fused["fused"]).select(split="test"))
    assert {r.path: r.score for r in scores} == expected
    # rank_mean ranks each clip among the stored rows alone: scoring one clip gives the same number
    one = system.score(test[5].path)[0]
    assert one.score == expected[str(test[5].path)]
    # the experiments' oe tables share an id: a plain name is ambiguous, a qualified one is not
    with pytest.raises(ConfigError, match="ambiguous"):
        resolve("oe", [Candidate("demo_hybrid", "oe"), Candidate("demo_baselines", "oe")], "ensemble.members")


# --- the unknown domain ----------------------------------------------------------------------------
def test_unknown_domain_scores_against_both_domain_models_and_says_which(hybrid, system, tmp_path):
    from hybrid_asd.detectors.adapt import DomainAdaptiveDetector
    from hybrid_asd.detectors.stage import load_embeddings

    named = sorted((data_root(hybrid) / "target_test").glob("section_01_target_test_normal_*.wav"))
    field_dir = tmp_path / "field"
    field_dir.mkdir()
    for i, src in enumerate(named):  # as recorded in the field: the name says nothing
        shutil.copy(src, field_dir / f"pump_room_{i:03d}.wav")
    unknown = system.score(field_dir, section=1)
    known = system.score(named)
    assert [r.domain for r in unknown] == ["unknown"] * len(named)
    assert [r.domain for r in known] == ["target"] * len(named)
    # the detectors never read the domain: the raw scores are the named clips' ones
    for u, k in zip(unknown, known):
        assert {m: s.raw for m, s in u.members.items()} == {m: s.raw for m, s in k.members.items()}
    # each kNN score is the minimum over the source and target memories, and the record names the winner
    knn = DomainAdaptiveDetector.load(hybrid.detector_model_dir("knn", "section_01"))
    clips = [parse_clip_path(p, machine="fan") for p in named]
    per_domain = knn.score_domains(load_embeddings(hybrid, clips))
    for i, record in enumerate(unknown):
        winner = min(per_domain, key=lambda d: per_domain[d][i])
        assert record.members["knn"].model == winner
        assert record.members["knn"].raw == per_domain[winner][i]
    assert "target" in {r.members["knn"].model for r in unknown}  # target normals find their target memory
    # the decision threshold of an unknown domain is the section's pooled one; a known domain keeps the stage's
    fused = ScoreTable.from_csv(hybrid.fusion.fused)
    pooled = np.concatenate([fused.select(split="train", section=1).scores])
    from hybrid_asd.evaluation.thresholds import gamma_threshold

    assert unknown[0].threshold == gamma_threshold(pooled, 0.9)
    assert known[0].threshold == section_thresholds(fused, 0.9)[("fan", 1, "target")]
    flagged = system.score(field_dir / "pump_room_000.wav", section=1, domain="target")[0]
    assert (flagged.domain, flagged.threshold) == ("target", known[0].threshold)


# --- windows of a long recording -------------------------------------------------------------------
def test_windowed_scoring_of_a_long_recording_peaks_on_the_anomalous_part(hybrid, tmp_path, capsys):
    fused = ScoreTable.from_csv(hybrid.fusion.fused).select(split="test", section=0, domain="source")
    normal = [c for c in fused.clips if c.label == "normal"]
    anomalies = [c for c in fused.clips if c.label == "anomaly"]
    scores = by_path(fused)
    quiet = sorted(normal, key=lambda c: scores[str(c.path)])[:2]
    loudest = max(anomalies, key=lambda c: scores[str(c.path)])
    assert scores[str(loudest.path)] > max(scores[str(c.path)] for c in quiet)
    parts = [sf.read(c.path, dtype="int16")[0] for c in (quiet[0], loudest, quiet[1])]
    recording = tmp_path / "line3_night_shift.wav"  # normal, anomalous, normal: 3 s each
    sf.write(recording, np.concatenate(parts), 16000, subtype="PCM_16")
    out = tmp_path / "series.jsonl"
    assert predict(["--exp", str(hybrid.root), str(recording), "--section", "0", "--domain", "source",
                    "--window", "3", "--hop", "1", "--out", str(out)]) == 0
    series = read_records(out)
    assert [(r.start, r.end) for r in series] == [(float(s), float(s + 3)) for s in range(7)]
    peak = max(series, key=lambda r: r.score)
    assert 1.0 <= peak.start <= 5.0 and peak.end > 3.0  # the peak window overlaps the anomalous part
    # the window that is exactly the anomalous clip scores as that clip did in the fuse stage
    aligned = next(r for r in series if r.start == 3.0)
    assert aligned.score == pytest.approx(scores[str(loudest.path)], rel=1e-9, abs=1e-12)
    assert aligned.score > max(r.score for r in series if r.end <= 3.0 or r.start >= 6.0)
    # report plots it: score over time with the threshold line
    assert main(["report", str(out)]) == 0
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from hybrid_asd.monitor.plot import series_of

    (drawn,) = series_of(series)
    np.testing.assert_array_equal(drawn.score, [r.score for r in series])
    np.testing.assert_array_equal(drawn.threshold, [r.threshold for r in series])


def test_plan_windows():
    assert plan_windows("x", 10.0, 4.0, 3.0) == [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    assert plan_windows("x", 3.0, 3.0, 1.0) == [(0.0, 3.0)]
    with pytest.raises(DataError, match="x: the recording lasts 2.00 s, shorter than one --window of 3 s"):
        plan_windows("x", 2.0, 3.0, 1.0)


# --- bad inputs ------------------------------------------------------------------------------------
def test_bad_inputs_are_skipped_named_and_listed_and_the_good_scores_kept(hybrid, tmp_path, capsys):
    good = sorted((data_root(hybrid) / "source_test").glob("section_00_*.wav"))[:2]
    folder = tmp_path / "in"
    folder.mkdir()
    for src in good:
        shutil.copy(src, folder / src.name)
    wave, rate = sf.read(good[0], dtype="float32")
    sf.write(folder / "short.wav", wave[: rate // 2], rate)  # 0.5 s: shorter than one 64-frame patch
    sf.write(folder / "phone.wav", wave[::4], rate // 4)  # 4 kHz: lacks the bands up to 8 kHz
    (folder / "notes.wav").write_text("not audio")
    shutil.copy(good[0], folder / "section_07_source_test_normal_0000.wav")  # a section the system lacks
    out = tmp_path / "scores.csv"
    rc = predict(["--exp", str(hybrid.root), str(folder), str(tmp_path / "missing"), "--section", "0", "--out", str(out)])
    assert rc == 2
    assert sorted(Path(r.path).name for r in read_records(out)) == sorted(p.name for p in good)
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    expected = {
        "short.wav": "shorter than one patch of 64 frames",
        "phone.wav": "sample rate 4000 Hz cannot be resampled",
        "notes.wav": "not a readable audio file",
        "section_07_source_test_normal_0000.wav": "section 07 is unknown to the system (it knows fan sections 00, 01)",
        "missing": "no such file or folder",
    }
    for name, text in expected.items():
        assert any(name in e and text in e for e in errors), (name, errors)


def test_a_file_without_a_known_name_needs_a_section(hybrid, system, tmp_path):
    path = tmp_path / "recording.wav"
    shutil.copy(next((data_root(hybrid) / "source_test").glob("*.wav")), path)
    with pytest.raises(DataError, match="recording.wav: cannot tell the section.*--section NN"):
        system.score(path)
    assert system.score(path, errors="skip").errors[0].startswith(f"{path}: cannot tell the section")
    with pytest.raises(DataError, match="domain 'east'"):
        system.score(path, section=0, domain="east")


def test_resampling_off_refuses_another_rate(system, tmp_path):
    from hybrid_asd.features.cache import FeatureCache
    from hybrid_asd.monitor.system import check_rate

    check_rate("x.wav", 48000, system.sources[0].front_end)  # downsampling keeps every band the model uses
    off = FeatureCache({}, {"resample": False})
    with pytest.raises(DataError, match="x.wav: sample rate 48000 Hz, but the system takes 16000 Hz and resampling is off"):
        check_rate("x.wav", 48000, off)


def test_an_interrupted_run_keeps_what_was_scored(hybrid, system, tmp_path, monkeypatch):
    from hybrid_asd.monitor import predict as predict_module
    from hybrid_asd.monitor.system import System

    files = sorted((data_root(hybrid) / "source_test").glob("section_00_*.wav"))[:3]
    real = System._score_items
    calls = {"n": 0}

    def interrupted(self, items, on_error):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        yield from real(self, items, on_error)

    monkeypatch.setattr(System, "_score_items", interrupted)
    out = tmp_path / "scores.jsonl"
    with pytest.raises(KeyboardInterrupt):
        predict_module.run_predict(None, files, out=out, batch_size=1, progress=False, system=system)
    assert [Path(r.path).name for r in read_records(out)] == [p.name for p in files[:2]]
    assert not out.with_name(out.name + ".partial").exists()


# --- watching a folder -----------------------------------------------------------------------------
def test_watch_scores_files_once_complete_appends_and_stops_on_ctrl_c(hybrid, system, tmp_path):
    from hybrid_asd.monitor.predict import run_predict

    sources = sorted((data_root(hybrid) / "source_test").glob("section_00_*.wav"))[:3]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(sources[0], inbox / sources[0].name)  # already there when the watch starts
    out = tmp_path / "watch.csv"
    polls: list[list[str]] = []

    def sleep(_seconds: float) -> None:  # what happens between polls
        n = len(polls)
        polls.append(sorted(r.path for r in read_records(out.with_name(out.name + ".partial"))))
        if n == 0:  # a recorder starts writing a file: half of it now, the rest later
            data = sources[1].read_bytes()
            (inbox / sources[1].name).write_bytes(data[: len(data) // 2])
        elif n == 1:
            (inbox / sources[1].name).write_bytes(sources[1].read_bytes())
        elif n == 4:
            raise KeyboardInterrupt

    summary = run_predict(None, [], watch=inbox, out=out, sleep=sleep, progress=False, system=system)
    assert summary.stopped and summary.scored == 2 and not summary.errors
    first, second = str(inbox / sources[0].name), str(inbox / sources[1].name)
    assert polls[1] == [first]  # the file present at the start, once its size was seen twice
    assert second not in polls[2]  # still being written at the previous poll
    assert polls[4] == sorted([first, second])
    assert sorted(r.path for r in read_records(out)) == sorted([first, second])
    # a restarted watch appends and skips what the output already holds
    shutil.copy(sources[2], inbox / sources[2].name)
    again = run_predict(None, [], watch=inbox, out=out, sleep=lambda s: None, max_polls=2, progress=False, system=system)
    assert again.scored == 1  # the new file; the 2 records before it are kept
    assert sorted(r.path for r in read_records(out)) == sorted([first, second, str(inbox / sources[2].name)])


# --- the Python API --------------------------------------------------------------------------------
def test_python_api_scores_waveforms_as_files(hybrid, system, tmp_path):
    path = sorted((data_root(hybrid) / "target_test").glob("section_01_*.wav"))[0]
    from_file = system.score(path)[0]
    wave, rate = sf.read(path, dtype="float32")
    from_wave = system.score([wave], section=1, domain="target")[0]
    assert from_wave.path == "<waveform 0>"
    assert from_wave.score == from_file.score and from_wave.members == from_file.members
    # a waveform at another rate is resampled as a file at that rate is
    from hybrid_asd.data.audio import resample_signal

    at_48k = resample_signal(wave, rate, 48000)
    sf.write(tmp_path / "at_48k.wav", at_48k, 48000, subtype="FLOAT")
    resampled = system.score(at_48k, sample_rate=48000, section=1, domain="target")[0]
    assert resampled.members == system.score(tmp_path / "at_48k.wav", section=1)[0].members
    with pytest.raises(DataError, match="non-empty 1-D array"):
        system.score(np.zeros((2, 2, 2), dtype=np.float32), section=1)
    with pytest.raises(DataError, match="cannot score int"):
        system.score([3])


def test_scores_to_frame_needs_pandas(system, hybrid):
    scores = system.score(sorted((data_root(hybrid) / "source_test").glob("*.wav"))[:2])
    try:
        import pandas  # noqa: F401  (optional)
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install pandas"):
            scores.to_frame()
        return
    frame = scores.to_frame()
    assert list(frame["score"]) == [r.score for r in scores] and "knn_model" in frame.columns


def test_load_system_is_exported_at_the_package_top(hybrid):
    import hybrid_asd
    from hybrid_asd.monitor.inputs import DEFAULT_BATCH
    from hybrid_asd.monitor.system import DEFAULT_BATCH as SYSTEM_BATCH
    from hybrid_asd.monitor.system import load_system

    assert hybrid_asd.load_system is load_system and DEFAULT_BATCH == SYSTEM_BATCH


# --- export ----------------------------------------------------------------------------------------
def test_export_round_trip_on_another_path(hybrid, system, tmp_path):
    copy = tmp_path / "exp_copy"
    shutil.copytree(hybrid.root, copy)
    first = tmp_path / "first"
    assert main(["export", "--exp", str(copy), "--out", str(first)]) == 0
    shutil.rmtree(copy)  # nothing may point back at the experiment
    moved = tmp_path / "elsewhere" / "pump_monitor"
    moved.parent.mkdir()
    first.rename(moved)
    spec = json.loads((moved / "system.json").read_text())
    assert [e["folder"] for e in spec["experiments"]] == ["experiments/demo_hybrid"]
    suffixes = {p.suffix for p in moved.rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".yaml", ".csv", ".md", ".txt", ".npy", ".faiss", ".pt"}
    card = (moved / "MODEL_CARD.md").read_text()
    assert "official score" in card and "hybrid-asd export --exp" in card
    assert "prepare, features, train, extract, fit, score, fuse, evaluate" in card  # the commands that made it
    test = hybrid.test_clips()
    out_exp, out_sys = tmp_path / "a.csv", tmp_path / "b.csv"
    files = [str(c.path) for c in test[:10]]
    assert predict(["--exp", str(hybrid.root), *files, "--out", str(out_exp)]) == 0
    assert predict(["--system", str(moved), *files, "--out", str(out_sys)]) == 0
    assert read_records(out_sys) == read_records(out_exp)
    assert out_sys.read_bytes() == out_exp.read_bytes()
    with pytest.raises(ConfigError, match="takes no weights file"):
        from hybrid_asd.monitor.system import load_system

        load_system(moved, weights=tmp_path / "w.yaml")


def test_export_refuses_a_non_empty_folder(hybrid, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    assert main(["export", "--exp", str(hybrid.root), "--out", str(tmp_path / "taken")]) == 2
    assert (tmp_path / "taken" / "x").read_text() == "x"


def test_stages_record_the_commands_that_completed_them(hybrid):
    lines = hybrid.commands_path.read_text().splitlines()
    assert [line.split("\t")[1] for line in lines] == ["prepare", "features", "train", "extract", "fit", "score",
                                                       "fuse", "evaluate"]


# --- records ---------------------------------------------------------------------------------------
def record(path: str, start: float | None = None) -> ClipScore:
    return ClipScore(path, "fan", 1, "unknown", "unknown", 0.1 + 1e-17, 1 / 3, 0,
                     {"demo_hybrid/knn": MemberScore(0.25, -1 / 7, "target"), "oe": MemberScore(2.0, 0.5, "")},
                     start, None if start is None else start + 2.5)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_records_round_trip_exactly_and_append(tmp_path, suffix):
    path = tmp_path / f"scores{suffix}"
    members = ["demo_hybrid/knn", "oe"]
    with RecordWriter(path, members) as writer:
        writer.write(record("/a.wav"))
        writer.write(record("/b.wav", 1.5))
    assert read_records(path) == [record("/a.wav"), record("/b.wav", 1.5)]
    with RecordWriter(path, members, append=True) as writer:
        assert writer.done == {("/a.wav", None), ("/b.wav", 1.5)}
        writer.write(record("/c.wav"))
    assert [r.path for r in read_records(path)] == ["/a.wav", "/b.wav", "/c.wav"]
    if suffix == ".csv":
        with pytest.raises(DataError, match="cannot append, its columns are not this system's"):
            RecordWriter(path, ["other"], append=True)
    with pytest.raises(DataError, match="must end in .csv or .jsonl"):
        RecordWriter(tmp_path / "scores.txt", members)


def test_weights_names_map_to_members():
    candidates = [Candidate("a", "oe"), Candidate("a", "knn"), Candidate("b", "oe")]
    assert resolve("knn", candidates, "w").qualified() == "a/knn"
    assert resolve("b/oe", candidates, "w") == Candidate("b", "oe")
    with pytest.raises(ConfigError, match="w: no score table 'gmm'; the experiments have: a/oe, a/knn, b/oe"):
        resolve("gmm", candidates, "w")
    assert rename_weights({"fan": {"knn": 2, "b/oe": 1}}, candidates, True, "w") == {"fan": {"a/knn": 2.0, "b/oe": 1.0}}
    assert rename_weights({"knn": 2}, candidates[:2], False, "w") == {"knn": 2.0}


# --- a waveform-input extractor (the multi-branch network) ----------------------------------------
@pytest.fixture(scope="module")
def multibranch(trained) -> Experiment:
    """multibranch_demo, narrowed (width 8, 2 s crops, one epoch), on the module's tiny data."""
    data = Path(trained["demo_hybrid"].load_config().data.root)
    config = load_config(CONFIG_DIR / "multibranch_demo.yaml", [
        f"data.root={data}", "data.machine=fan", "seed=1", "extractor.epochs=1", "extractor.batch_size=32",
        "extractor.backbone.conf.width=8", "extractor.backbone.conf.clip_seconds=2.0"])
    exp = Experiment(data.parent / "exp" / "multibranch_demo")
    run_stages(exp, config, progress=False)
    return exp


def test_predict_with_a_waveform_extractor_equals_the_stages(multibranch, tmp_path):
    """The network reads crops of the waveform, not log-mel patches: predict must feed it the same."""
    from hybrid_asd.monitor.system import load_system

    test = multibranch.test_clips()
    records = {r.path: r for r in load_system(multibranch.root).score([c.path for c in test])}
    assert sorted(records) == sorted(str(c.path) for c in test)
    stage = by_path(ScoreTable.from_csv(multibranch.score_table_path("knn")).select(split="test"))
    assert {p: r.members["knn"].raw for p, r in records.items()} == pytest.approx(stage, rel=1e-6, abs=1e-7)
    fused = by_path(ScoreTable.from_csv(multibranch.fusion.fused).select(split="test"))
    assert {p: r.score for p, r in records.items()} == pytest.approx(fused, rel=1e-6, abs=1e-7)
    # a waveform given in memory is scored as its file is (alone in its batch: float32 convolutions sum in
    # another order than in the full batch, so equal to about 1e-5 relative, not to the last bit)
    wave, rate = sf.read(test[0].path, dtype="float32")
    again = load_system(multibranch.root).score(wave, sample_rate=rate, section=test[0].section,
                                                domain=test[0].domain)[0]
    assert again.members["knn"].raw == pytest.approx(records[str(test[0].path)].members["knn"].raw, rel=1e-4)
