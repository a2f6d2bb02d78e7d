"""File-name parsing: every official scheme, attributes, and refused names."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid_asd.data.names import NameParseError, parse_attributes, parse_clip_path
from hybrid_asd.errors import DataError

DCASE2023 = Path("dcase2023t2-samples/dev_data/raw")


def test_every_dcase2023_sample_parses(shared_data):
    paths = sorted((shared_data / DCASE2023).glob("*/*/*.wav"))
    assert len(paths) == 26
    for path in paths:
        clip = parse_clip_path(path)
        assert clip.machine == path.parent.parent.name
        assert clip.section == 0
        assert clip.split == path.parent.name
        assert clip.domain in ("source", "target")
        assert clip.label in ("normal", "anomaly")
        assert clip.scheme == "dcase2022"
        assert f"_{clip.domain}_{clip.split}_{clip.label}_{clip.index:04d}" in path.name
        assert clip.attributes, path.name  # every 2023 sample tail pairs up
    assert sum(parse_clip_path(p).is_anomaly for p in paths) == 4


def test_toycar_attributes(shared_data):
    path = shared_data / DCASE2023 / "ToyCar/test/section_00_source_test_normal_0028_car_C2_spd_34V_mic_1.wav"
    clip = parse_clip_path(path)
    assert (clip.machine, clip.section, clip.domain, clip.split, clip.label, clip.index) == (
        "ToyCar", 0, "source", "test", "normal", 28,
    )  # fmt: skip
    assert clip.attributes == (("car", "C2"), ("spd", "34V"), ("mic", "1"))
    assert clip.attribute_dict["spd"] == "34V"
    assert clip.attributes_raw == "car_C2_spd_34V_mic_1"


def test_mimii_layout(shared_data):
    clip = parse_clip_path(shared_data / "mimii-8ch/pump/id_00/abnormal/00000000.wav")
    assert (clip.machine, clip.section, clip.domain, clip.split, clip.label, clip.index, clip.scheme) == (
        "pump", 0, "source", "test", "anomaly", 0, "mimii",
    )  # fmt: skip
    assert parse_clip_path(shared_data / "mimii-8ch/slider/id_00/normal/00000000.wav").label == "normal"


@pytest.mark.parametrize(
    "raw, pairs",
    [
        ("car_C2_spd_34V_mic_1", (("car", "C2"), ("spd", "34V"), ("mic", "1"))),
        ("m-n_W", (("m-n", "W"),)),
        ("volt_1.5_wt_150", (("volt", "1.5"), ("wt", "150"))),
        ("strength_1_ambient", ()),  # odd count
        ("1_a_2_b", ()),  # numeric keys
        ("A1Spd28VMic1", ()),  # 2021 ToyCar style: one token
        ("a__b", ()),  # empty token
        ("", ()),
    ],
)
def test_parse_attributes(raw, pairs):
    assert parse_attributes(raw) == pairs


def test_raw_tail_kept_when_unpaired():
    clip = parse_clip_path("fan/train/section_01_target_train_normal_0007_strength_1_ambient.wav")
    assert clip.attributes == () and clip.attributes_raw == "strength_1_ambient"
    assert (clip.section, clip.domain, clip.index) == (1, "target", 7)


def test_dcase2020_names():
    clip = parse_clip_path("data/fan/train/normal_id_04_00000012.wav")
    assert (clip.machine, clip.section, clip.domain, clip.split, clip.label, clip.index, clip.scheme) == (
        "fan", 4, "source", "train", "normal", 12, "dcase2020",
    )  # fmt: skip
    assert parse_clip_path("fan/test/anomaly_id_02_00000001.wav").label == "anomaly"
    evaluation = parse_clip_path("fan/test/id_05_00000000.wav")
    assert (evaluation.section, evaluation.split, evaluation.label) == (5, "test", "unknown")
    with pytest.raises(NameParseError, match="neither 'train' nor 'test'"):
        parse_clip_path("fan/other/normal_id_04_00000012.wav")


def test_dcase2021_names(tmp_path):
    machine = tmp_path / "gearbox"
    for folder in ("train", "source_test", "target_test"):
        (machine / folder).mkdir(parents=True)
    train = parse_clip_path(machine / "train" / "section_02_source_train_normal_0003_volt_1.0_wt_30.wav")
    assert (train.section, train.split, train.scheme) == (2, "train", "dcase2021")
    test = parse_clip_path(machine / "target_test" / "section_00_target_test_anomaly_0001.wav")
    assert (test.domain, test.split, test.label, test.attributes_raw, test.scheme) == (
        "target", "test", "anomaly", "", "dcase2021",
    )  # fmt: skip
    evaluation = parse_clip_path(machine / "source_test" / "section_03_source_test_0000.wav")
    parsed = (evaluation.section, evaluation.domain, evaluation.split, evaluation.label)
    assert parsed == (3, "source", "test", "unknown")


def test_dcase2022_eval_names_hide_domain():
    clip = parse_clip_path("bandsaw/test/section_00_0123.wav")
    assert (clip.machine, clip.section, clip.domain, clip.split, clip.label, clip.index, clip.scheme) == (
        "bandsaw", 0, "unknown", "test", "unknown", 123, "dcase2022",
    )  # fmt: skip


def test_explicit_machine_overrides_folder():
    assert parse_clip_path("x/train/section_00_source_train_normal_0000.wav", machine="fan").machine == "fan"


@pytest.mark.parametrize(
    "path, reason",
    [
        ("fan/train/readme.txt", "not a .wav file"),
        ("fan/train/section_00_source_normal_0000.wav", "matches no known scheme"),
        ("fan/train/recording.wav", "matches no known scheme"),
        ("fan/train/section_00_source_test_normal_0000.wav", "split 'test' but it lies in folder 'train'"),
        ("fan/source_test/section_00_target_test_normal_0000.wav", "domain 'target'"),
        ("pump/id_00/normal/clip.wav", "not a clip number"),
        ("section_00_source_train_normal_0000.wav", "cannot tell the machine type"),
    ],
)
def test_refused_names_say_file_and_reason(path, reason):
    with pytest.raises(NameParseError, match=reason) as info:
        parse_clip_path(path)
    assert Path(path).name in str(info.value)
    assert isinstance(info.value, DataError)
    assert reason in info.value.reason
