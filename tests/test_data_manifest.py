"""Manifests: DCASE 2020/2021/2022+ and MIMII layouts, ground-truth joins, problems, summary."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hybrid_asd.data.manifest import Manifest, scan
from hybrid_asd.errors import ConfigError, DataError

GROUND_TRUTH = "dcase2021t2-eval-ground-truth"


def _wav(path: Path, frames: int = 160) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(frames, dtype=np.float32), 16000, subtype="PCM_16")
    return path


def _ground_truth_rows(shared_data: Path, machine: str, section: int, domain: str) -> list[tuple[str, int]]:
    path = shared_data / GROUND_TRUTH / f"ground_truth_{machine}_section_{section:02d}_{domain}_test.csv"
    with open(path, newline="") as fh:
        return [(row[0], int(row[1])) for row in csv.reader(fh) if row]


def test_dcase2023_samples(shared_data):
    manifest = scan(shared_data / "dcase2023t2-samples/dev_data/raw")
    assert len(manifest.clips) == 26 and manifest.problems == []
    assert manifest.machines() == ["ToyCar", "ToyTrain", "bearing", "fan", "gearbox", "slider", "valve"]
    assert manifest.sections("fan") == [0]
    assert manifest.domains() == ["source", "target"]
    assert len(manifest.select(machine="valve", split="train")) == 2
    assert len(manifest.select(label="anomaly")) == 4
    assert manifest.counts()[("ToyTrain", 0, "target", "test")] == {"normal": 1, "anomaly": 1, "unknown": 0}
    only_fan = scan(shared_data / "dcase2023t2-samples/dev_data/raw", machines=["fan"])
    assert only_fan.machines() == ["fan"] and len(only_fan.clips) == 4


def test_mimii_scan(shared_data):
    manifest = scan(shared_data / "mimii-8ch", check_audio=True)
    assert manifest.machines() == ["pump", "slider"] and manifest.problems == []
    assert manifest.counts() == {
        ("pump", 0, "source", "test"): {"normal": 1, "anomaly": 1, "unknown": 0},
        ("slider", 0, "source", "test"): {"normal": 1, "anomaly": 1, "unknown": 0},
    }


def test_mimii_split_follows_the_mimii_baseline(tmp_path):
    """Per machine and id: the abnormal clips and the first as many normal clips (sorted) are test,
    the other normal clips train; an id without abnormal clips is all training."""
    for i in (4, 0, 3, 1, 2):  # created out of order: the split must sort
        _wav(tmp_path / "fan/id_00/normal" / f"{i:08d}.wav")
    for i in range(2):
        _wav(tmp_path / "fan/id_00/abnormal" / f"{i:08d}.wav")
    for i in range(3):
        _wav(tmp_path / "fan/id_02/normal" / f"{i:08d}.wav")
    manifest = scan(tmp_path)
    assert manifest.counts() == {
        ("fan", 0, "source", "test"): {"normal": 2, "anomaly": 2, "unknown": 0},
        ("fan", 0, "source", "train"): {"normal": 3, "anomaly": 0, "unknown": 0},
        ("fan", 2, "source", "train"): {"normal": 3, "anomaly": 0, "unknown": 0},
    }
    test_normals = sorted(c.path.name for c in manifest.select(section=0, split="test", label="normal"))
    assert test_normals == ["00000000.wav", "00000001.wav"]
    assert all(c.label == "normal" for c in manifest.select(split="train"))


def test_dcase2020_layout_counts_and_summary(tmp_path):
    for i in range(3):
        _wav(tmp_path / "fan/train" / f"normal_id_00_{i:08d}.wav")
        _wav(tmp_path / "fan/train" / f"normal_id_02_{i:08d}.wav")
    _wav(tmp_path / "fan/test/normal_id_00_00000000.wav")
    _wav(tmp_path / "fan/test/anomaly_id_00_00000000.wav")
    _wav(tmp_path / "fan/test/anomaly_id_00_00000001.wav")
    _wav(tmp_path / "fan/test/recording_final.wav")  # matches no scheme
    (tmp_path / "fan/test/notes.txt").write_text("not a clip")  # not a .wav: ignored
    manifest = scan(tmp_path)
    assert {clip.scheme for clip in manifest.clips} == {"dcase2020"}
    assert manifest.sections("fan") == [0, 2]
    assert manifest.counts() == {
        ("fan", 0, "source", "test"): {"normal": 1, "anomaly": 2, "unknown": 0},
        ("fan", 0, "source", "train"): {"normal": 3, "anomaly": 0, "unknown": 0},
        ("fan", 2, "source", "train"): {"normal": 3, "anomaly": 0, "unknown": 0},
    }
    assert [(p.name, "matches no known scheme" in r) for p, r in manifest.problems] == [("recording_final.wav", True)]
    lines = manifest.summary().splitlines()
    assert lines[0].startswith("9 clips, 1 machine type(s)")
    assert lines[1].split() == ["machine", "section", "domain", "split", "normal", "anomaly", "unknown", "total"]
    assert lines[3].split() == ["fan", "00", "source", "test", "1", "2", "0", "3"]
    assert lines[5].split() == ["fan", "02", "source", "train", "3", "0", "0", "3"]
    assert "problems: 1" in lines
    assert any(line.strip().startswith("recording_final.wav: file name matches no known scheme") for line in lines)


def test_dcase2021_layout(tmp_path):
    _wav(tmp_path / "pump/train/section_00_source_train_normal_0000_strength_1_ambient.wav")
    _wav(tmp_path / "pump/train/section_00_target_train_normal_0000_strength_2_ambient.wav")
    _wav(tmp_path / "pump/source_test/section_00_source_test_anomaly_0000.wav")
    _wav(tmp_path / "pump/target_test/section_00_target_test_normal_0000.wav")
    _wav(tmp_path / "pump/target_test/section_00_source_test_normal_0001.wav")  # domain contradicts folder
    manifest = scan(tmp_path, machines=["pump"])
    assert {clip.scheme for clip in manifest.clips} == {"dcase2021"}
    assert len(manifest.clips) == 4
    assert manifest.select(split="train", domain="target")[0].attributes_raw == "strength_2_ambient"
    assert len(manifest.select(split="test", domain=["source", "target"])) == 2
    ((path, reason),) = manifest.problems
    assert path.name == "section_00_source_test_normal_0001.wav" and "folder 'target_test'" in reason


def test_eval_names_joined_with_official_ground_truth(shared_data, tmp_path):
    source = _ground_truth_rows(shared_data, "fan", 3, "source")
    target = _ground_truth_rows(shared_data, "fan", 4, "target")
    truth = source[:3] + source[-2:] + target[:3] + target[-2:]
    assert {value for _, value in truth} == {0, 1}  # both labels exercised
    for name, _ in truth:
        folder = "source_test" if "_source_" in name else "target_test"
        _wav(tmp_path / "fan" / folder / name)
    _wav(tmp_path / "fan/source_test/section_03_source_test_9999.wav")  # not in the ground truth
    _wav(tmp_path / "fan/train/section_03_source_train_normal_0000.wav")
    unlabelled = scan(tmp_path)
    assert len(unlabelled.select(label="unknown")) == 11
    manifest = scan(tmp_path, ground_truth=shared_data / GROUND_TRUTH)
    labels = {Path(c.path).name: c.label for c in manifest.clips}
    for name, value in truth:
        assert labels[name] == ("anomaly" if value else "normal")
    assert labels["section_03_source_test_9999.wav"] == "unknown"
    assert labels["section_03_source_train_normal_0000.wav"] == "normal"
    ((path, reason),) = manifest.problems
    assert path.name == "section_03_source_test_9999.wav"
    assert "no ground-truth entry" in reason and "ground_truth_fan_section_03_source_test.csv" in reason


def test_domain_hidden_eval_names_get_domain_from_ground_truth(tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    source_csv = gt / "ground_truth_bandsaw_section_00_source_test.csv"
    source_csv.write_text("section_00_0000.wav,0\nsection_00_0001.wav,1\n")
    (gt / "ground_truth_bandsaw_section_00_target_test.csv").write_text("section_00_0002.wav,1\n")
    for i in range(4):
        _wav(tmp_path / "data/bandsaw/test" / f"section_00_{i:04d}.wav")
    manifest = scan(tmp_path / "data", ground_truth=gt)
    got = {(c.index, c.domain, c.label) for c in manifest.clips}
    expected = {(0, "source", "normal"), (1, "source", "anomaly"), (2, "target", "anomaly"), (3, "unknown", "unknown")}
    assert got == expected
    assert [(p.name, "either domain" in r) for p, r in manifest.problems] == [("section_00_0003.wav", True)]


def test_check_audio_reports_bad_files(tmp_path):
    _wav(tmp_path / "fan/train/section_00_source_train_normal_0000.wav", frames=16000)
    (tmp_path / "fan/train/section_00_source_train_normal_0001.wav").write_bytes(b"")
    assert len(scan(tmp_path).clips) == 2
    manifest = scan(tmp_path, check_audio=True)
    assert len(manifest.clips) == 1
    ((path, reason),) = manifest.problems
    assert path.name == "section_00_source_train_normal_0001.wav" and reason == "empty file (0 bytes)"


def test_missing_root_and_machine(tmp_path):
    with pytest.raises(DataError, match="data root not found.*nothing"):
        scan(tmp_path / "nothing")
    _wav(tmp_path / "fan/train/section_00_source_train_normal_0000.wav")
    with pytest.raises(DataError, match="machine folder not found.*pump"):
        scan(tmp_path, machines=["fan", "pump"])
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(DataError, match="no machine folders"):
        scan(tmp_path / "empty_root")
    (tmp_path / "no_wavs/fan/train").mkdir(parents=True)
    with pytest.raises(DataError, match="no .wav files found"):
        scan(tmp_path / "no_wavs")


def test_select_rejects_unknown_field():
    with pytest.raises(ConfigError, match="unknown clip field"):
        Manifest().select(machin="fan")


def test_check_audio_reports_corrupt_empty_truncated_short_other_rate_and_multichannel_files(tmp_path, capsys):
    from hybrid_asd.cli import main

    folder = tmp_path / "fan" / "train"
    name = "section_00_source_train_normal_{:04d}_a_1.wav"
    good = _wav(folder / name.format(0), frames=48000)
    (folder / name.format(1)).write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all" * 4)  # corrupt
    (folder / name.format(2)).write_bytes(b"")  # empty
    (folder / name.format(3)).write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # truncated
    _wav(folder / name.format(4), frames=160)  # too short for one log-mel frame
    sf.write(folder / name.format(5), np.zeros(44100 * 3, np.float32), 44100)  # other rate
    sf.write(folder / name.format(6), np.zeros((48000, 2), np.float32), 16000)  # two channels
    _wav(folder / name.format(7), frames=16000)  # shorter than one patch (2.02 s)
    manifest = scan(tmp_path, check_audio=True)
    problems = {p.name: reason for p, reason in manifest.problems}
    assert "not a readable audio file" in problems[name.format(1)]
    assert "empty file" in problems[name.format(2)]
    assert "truncated" in problems[name.format(3)]
    assert "too short" in problems[name.format(4)]
    notes = {p.name: what for p, what in manifest.notes}
    assert "sample rate 44100 Hz" in notes[name.format(5)]
    assert "2 channels (channel 0 is used" in notes[name.format(6)]
    assert "shorter than one patch" in notes[name.format(7)]
    assert sorted(c.name for c in manifest.clips) == [name.format(i) for i in (0, 5, 6, 7)]
    assert main(["manifest", str(tmp_path), "--check-audio"]) == 0
    out = capsys.readouterr().out
    assert "problems: 4" in out and "audio notes: 3" in out and "2 channels" in out


def test_check_audio_names_the_channel_setting(tmp_path, capsys):
    from hybrid_asd.cli import main
    from hybrid_asd.data.manifest import AudioExpectations

    folder = tmp_path / "fan" / "train"
    name = "section_00_source_train_normal_0000_a_1.wav"
    folder.mkdir(parents=True)
    sf.write(folder / name, np.zeros((48000, 2), np.float32), 16000)
    for channel, used in ((0, "channel 0 is used"), (3, "channel 3 does not exist"),
                          ("mean", "the mean of the 2 channels is used"), ("all", "all 2 channels are used")):
        notes = scan(tmp_path, check_audio=True, audio=AudioExpectations(channel=channel)).notes
        assert len(notes) == 1 and notes[0][1].startswith(f"2 channels ({used}")
    assert main(["manifest", str(tmp_path), "--check-audio", "--channel", "mean"]) == 0
    assert "the mean of the 2 channels is used" in capsys.readouterr().out
