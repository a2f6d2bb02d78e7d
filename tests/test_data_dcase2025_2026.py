"""DCASE 2025 / 2026 Task 2 layouts: official names, supplemental clips, two-channel audio and data.channel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dcase_fixtures import write_dcase2025_dev, write_dcase2026_dev, write_wav
from hybrid_asd.config import load_config
from hybrid_asd.data.audio import load_audio
from hybrid_asd.data.clips import read_clip_list, write_clip_list
from hybrid_asd.data.inventory import channel_counts, format_inventory, inventory
from hybrid_asd.data.manifest import scan
from hybrid_asd.data.names import SUPPLEMENTAL, parse_attributes, parse_clip_path
from hybrid_asd.data.settings import DataSettings
from hybrid_asd.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


# --- names ------------------------------------------------------------------------------------------
def test_dcase2026_name_with_noise_part():
    clip = parse_clip_path("ToyCar/test/section_00_source_test_normal_0000_car_A2_spd_28V_mic_1_noise_1.wav")
    assert (clip.machine, clip.section, clip.domain, clip.split, clip.label, clip.index, clip.scheme) == (
        "ToyCar", 0, "source", "test", "normal", 0, "dcase2022")
    assert clip.attributes == (("car", "A2"), ("spd", "28V"), ("mic", "1"), ("noise", "1"))
    assert clip.attributes_raw == "car_A2_spd_28V_mic_1_noise_1"


@pytest.mark.parametrize("raw, pairs", [
    ("noAttribute_noise_2", (("noise", "2"),)),  # hidden attributes: the noise part is still kept
    ("m-n_W_x_noise_3", (("noise", "3"),)),  # an odd head does not pair: only noise
    ("noise_1", (("noise", "1"),)),
    ("vel_8_loc_G_noise_1", (("vel", "8"), ("loc", "G"), ("noise", "1"))),
    ("noAttribute", ()),
    ("", ()),
])
def test_noise_part_is_an_attribute(raw, pairs):
    assert parse_attributes(raw) == pairs


def test_dcase2025_names_empty_hidden_and_eval_attributes():
    empty = parse_clip_path("bearing/train/section_00_source_train_normal_0989_.wav")
    assert (empty.section, empty.domain, empty.split, empty.index, empty.attributes, empty.attributes_raw) == (
        0, "source", "train", 989, (), "")
    hidden = parse_clip_path("bearing/train/section_00_target_train_normal_0009_noAttribute.wav")
    assert (hidden.domain, hidden.index, hidden.attributes, hidden.attributes_raw) == (
        "target", 9, (), "noAttribute")
    renamed = parse_clip_path("AutoTrash/test/section_00_source_test_anomaly_0001_id_A1_spd_1_mic_2.wav")
    assert (renamed.label, renamed.attributes) == ("anomaly", (("id", "A1"), ("spd", "1"), ("mic", "2")))
    hidden_eval = parse_clip_path("AutoTrash/test/section_00_0199.wav")
    assert (hidden_eval.domain, hidden_eval.label, hidden_eval.index) == ("unknown", "unknown", 199)


def test_supplemental_names():
    clip = parse_clip_path("AutoTrash/supplemental/section_00_machine_0100_.wav")
    assert (clip.machine, clip.section, clip.split, clip.label, clip.domain, clip.index, clip.kind, clip.scheme) == (
        "AutoTrash", 0, SUPPLEMENTAL, "normal", "unknown", 100, "machine", "supplemental")
    noise = parse_clip_path("AutoTrash/supplemental/section_00_noise_0003_spd_1.wav")
    assert (noise.kind, noise.index, noise.attributes) == ("noise", 3, (("spd", "1"),))
    with pytest.raises(DataError, match="supplemental.*section_<nn>_<kind>_<nnnn>"):
        parse_clip_path("AutoTrash/supplemental/recording_1.wav")
    # an ordinary training name in a supplemental folder is not taken for a training clip
    with pytest.raises(DataError, match="supplemental"):
        parse_clip_path("AutoTrash/supplemental/section_00_source_train_normal_0000_.wav")


def test_kind_round_trips_through_clip_lists(tmp_path):
    clips = [parse_clip_path("fan/supplemental/section_00_machine_0001_.wav"),
             parse_clip_path("fan/train/section_00_source_train_normal_0000_m-n_W_noise_1.wav")]
    write_clip_list(tmp_path / "c.csv", clips)
    back = read_clip_list(tmp_path / "c.csv")
    assert [(c.kind, c.split, c.attributes) for c in back] == [
        ("machine", SUPPLEMENTAL, ()), ("", "train", (("m-n", "W"), ("noise", "1")))]


# --- manifests --------------------------------------------------------------------------------------
def test_dcase2026_manifest_counts_attributes_and_channels(tmp_path):
    written = write_dcase2026_dev(tmp_path, machines=("ToyCar", "fan"), n_source=4, n_target=2, n_test=2)
    write_wav(tmp_path / "fan" / "test" / "fan_recording.wav", np.zeros((1600, 2), np.float32))
    manifest = scan(tmp_path)
    assert len(manifest.clips) == len(written["train"]) + len(written["test"]) == 2 * (6 + 8)
    assert [p.name for p, _ in manifest.problems] == ["fan_recording.wav"]
    assert manifest.counts()[("ToyCar", 0, "target", "test")] == {"normal": 2, "anomaly": 2, "unknown": 0}
    assert manifest.counts()[("fan", 0, "source", "train")] == {"normal": 4, "anomaly": 0, "unknown": 0}
    items = {i.machine: i for i in inventory(manifest.clips)}
    assert items["ToyCar"].attributes == {"car": ["A2"], "spd": ["28V"], "mic": ["1"], "noise": ["1", "2"]}
    assert items["ToyCar"].channels == {2: 14} and items["fan"].supplemental == {}
    text = format_inventory(list(items.values()), channel=0)
    assert "ToyCar: sections 00; domains source, target" in text
    assert "channels: 14 file(s) with 2 channel(s)" in text
    assert "multi-channel input: data.channel = 0: channel 0 only (DCASE 2026: the near microphone" in text
    assert "data.channel = all: every channel" in format_inventory(list(items.values()), channel="all")


def test_dcase2025_manifest_lists_supplemental_clips(tmp_path):
    written = write_dcase2025_dev(tmp_path, n_source=5, n_target=2, n_test=2, n_supplemental=3)
    manifest = scan(tmp_path)
    assert manifest.problems == []
    assert len(manifest.select(split="train")) == 7 and len(manifest.select(split="test")) == 8
    supplemental = manifest.select(split=SUPPLEMENTAL)
    assert len(supplemental) == len(written["supplemental"]) == 6
    assert manifest.counts()[("bearing", 0, "unknown", SUPPLEMENTAL)] == {"normal": 6, "anomaly": 0, "unknown": 0}
    (item,) = inventory(manifest.clips)
    assert item.supplemental == {"machine": 3, "noise": 3}
    assert item.channels == {1: 21} and item.attributes == {}
    assert "supplemental clips: 3 machine, 3 noise" in format_inventory([item])
    assert "multi-channel" not in format_inventory([item])


def test_channel_counts_count_unreadable_files(tmp_path):
    good = write_wav(tmp_path / "a.wav", np.zeros((800, 2), np.float32))
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"not audio")
    assert channel_counts([good, bad]) == {0: 1, 2: 1}


def test_manifest_cli_shows_supplemental_and_channels(tmp_path):
    write_dcase2025_dev(tmp_path / "d25", n_source=2, n_target=1, n_test=1, n_supplemental=1)
    write_dcase2026_dev(tmp_path / "d26", machines=("ToyCar",), n_source=2, n_target=1, n_test=1)
    env_cmd = [sys.executable, "-m", "hybrid_asd.cli", "manifest"]
    out25 = subprocess.run([*env_cmd, str(tmp_path / "d25")], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "bearing  00       unknown  supplemental       2" in out25.stdout
    assert "supplemental clips: 1 machine, 1 noise" in out25.stdout
    out26 = subprocess.run([*env_cmd, str(tmp_path / "d26"), "--channel", "mean"], capture_output=True, text=True,
                           cwd=ROOT, check=True)
    assert "channels: 7 file(s) with 2 channel(s)" in out26.stdout
    assert "multi-channel input: data.channel = mean: the mean of all channels" in out26.stdout
    bad = subprocess.run([*env_cmd, str(tmp_path / "d26"), "--channel", "left"], capture_output=True, text=True,
                         cwd=ROOT)
    assert bad.returncode == 2 and "expected a channel index or one of mean, all" in bad.stderr


# --- two-channel audio --------------------------------------------------------------------------------
@pytest.fixture
def stereo(tmp_path) -> tuple[Path, np.ndarray]:
    written = write_dcase2026_dev(tmp_path, machines=("ToyCar",), n_source=1, n_target=0, n_test=0)
    path = written["train"][0]
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    assert data.shape == (16000, 2) and rate == 16000 and sf.info(path).subtype == "PCM_16"
    return path, data


def test_load_audio_channel_choices(stereo):
    path, data = stereo
    np.testing.assert_array_equal(load_audio(path), data[:, 0])  # the default: near microphone
    np.testing.assert_array_equal(load_audio(path, channel=1), data[:, 1])
    mean = load_audio(path, channel="mean")
    np.testing.assert_allclose(mean, (data[:, 0].astype(np.float64) + data[:, 1]) / 2, atol=1e-7)
    both = load_audio(path, channel="all", duration=0.5)
    assert both.shape == (2, 8000) and both.dtype == np.float32
    np.testing.assert_array_equal(both, data[:8000].T)
    padded = load_audio(path, channel="all", duration=1.25)
    assert padded.shape == (2, 20000) and not padded[:, 16000:].any()
    resampled = load_audio(path, channel="all", sample_rate=8000)
    assert resampled.shape == (2, 8000)
    np.testing.assert_allclose(resampled[1], load_audio(path, channel=1, sample_rate=8000), atol=1e-6)
    with pytest.raises(DataError, match="channel 2 requested but the file has 2 channel"):
        load_audio(path, channel=2)


def test_mono_file_with_all_gives_one_plane(tmp_path):
    path = write_wav(tmp_path / "m.wav", np.full(1600, 0.25, np.float32))
    out = load_audio(path, channel="all")
    assert out.shape == (1, 1600) and np.all(out == 0.25)
    assert np.all(load_audio(path, channel="mean") == 0.25)


def test_data_channel_setting_validates_to_one_line():
    assert DataSettings.parse({"channel": "all"}).channel == "all"
    assert DataSettings.parse({"channel": 1}).channel == 1
    assert DataSettings().channel == 0  # the official 2026 baseline's choice
    for bad in ("left", -1, True, 1.5):
        with pytest.raises(ConfigError) as err:
            load_config(None, [f"data.channel={bad}"])
        assert len(str(err.value).splitlines()) == 1
        assert "data.channel" in str(err.value) and "'mean', 'all'" in str(err.value)


def test_mimii_eight_channel_extensible_files_with_mean_and_all(shared_data):
    path = shared_data / "mimii-8ch" / "pump" / "id_00" / "normal" / "00000000.wav"
    raw, rate = sf.read(path, dtype="float32", always_2d=True)
    assert raw.shape[1] == 8 and rate == 16000
    every = load_audio(path, channel="all", duration=1.0)
    assert every.shape == (8, 16000)
    np.testing.assert_array_equal(every[5], raw[:16000, 5])
    np.testing.assert_allclose(load_audio(path, channel="mean", duration=1.0), raw[:16000].mean(axis=1), atol=1e-7)
    assert channel_counts([path]) == {8: 1}
