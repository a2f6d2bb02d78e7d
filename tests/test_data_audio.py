"""Audio loading: real multichannel files, formats, resampling, length, and malformed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hybrid_asd.data.audio import audio_info, load_audio
from hybrid_asd.errors import DataError


def _sine(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def pcm_wav(tmp_path) -> Path:
    path = tmp_path / "pcm.wav"
    sf.write(path, _sine(16000, 1.0), 16000, subtype="PCM_16")
    return path


def test_mimii_8ch_channels(shared_data):
    path = shared_data / "mimii-8ch/pump/id_00/normal/00000000.wav"
    info = audio_info(path)
    assert (info["channels"], info["sample_rate"], info["frames"], info["subtype"]) == (8, 16000, 160000, "PCM_16")
    first, last = load_audio(path), load_audio(path, channel=7)
    assert first.shape == last.shape == (160000,)
    assert first.dtype == np.float32 and np.abs(first).max() <= 1.0
    assert not np.array_equal(first, last)
    reference, _ = sf.read(path, dtype="float32")
    np.testing.assert_array_equal(last, reference[:, 7])
    with pytest.raises(DataError, match=r"channel 8 requested but the file has 8 channel"):
        load_audio(path, channel=8)


def test_toycar_12s_cropped_to_10s(shared_data):
    path = next((shared_data / "dcase2023t2-samples/dev_data/raw/ToyCar/train").glob("*.wav"))
    full = load_audio(path)
    assert full.shape == (12 * 16000,)
    np.testing.assert_array_equal(load_audio(path, duration=10.0), full[: 10 * 16000])


def test_pcm16_values_exact(tmp_path):
    ints = np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16)
    path = tmp_path / "ints.wav"
    sf.write(path, ints, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(path), ints.astype(np.float32) / 32768.0)


def test_float_wav(tmp_path):
    signal = _sine(16000, 0.5, amp=0.9)
    signal[10] = 1.5  # out of range in a float file: clipped
    path = tmp_path / "float.wav"
    sf.write(path, signal, 16000, subtype="FLOAT")
    assert audio_info(path)["subtype"] == "FLOAT"
    out = load_audio(path)
    assert out.dtype == np.float32 and out[10] == 1.0
    np.testing.assert_array_equal(np.delete(out, 10), np.delete(signal, 10))


def test_float_wav_with_nan_refused(tmp_path):
    signal = _sine(16000, 0.1)
    signal[5] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, signal, 16000, subtype="FLOAT")
    with pytest.raises(DataError, match="nan.wav: audio holds NaN"):
        load_audio(path)


def test_pad_and_crop(pcm_wav):
    padded = load_audio(pcm_wav, duration=1.5)
    assert padded.shape == (24000,) and not padded[16000:].any()
    assert load_audio(pcm_wav, duration=0.25).shape == (4000,)
    assert load_audio(pcm_wav, duration=1 / 3).shape == (round(16000 / 3),)


def test_other_rate_resampled_or_refused(tmp_path):
    path = tmp_path / "sr22050.wav"
    sf.write(path, _sine(22050, 1.0), 22050, subtype="FLOAT")
    out = load_audio(path, sample_rate=16000, duration=1.0)
    assert out.shape == (16000,)
    # Away from the edges the resampled sine matches one generated at 16 kHz.
    np.testing.assert_allclose(out[500:-500], _sine(16000, 1.0)[500:-500], atol=2e-3)
    assert load_audio(path, sample_rate=16000).shape == (16000,)
    with pytest.raises(DataError, match=r"sr22050.wav: sample rate 22050 Hz differs from the configured 16000 Hz"):
        load_audio(path, sample_rate=16000, resample=False)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found.*nowhere.wav"):
        load_audio(tmp_path / "nowhere.wav")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty.wav: empty file"):
        load_audio(path)


def test_zero_frames(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    with pytest.raises(DataError, match="zero.wav: .*0 frames"):
        load_audio(path)


def test_text_file_renamed_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 10)
    with pytest.raises(DataError, match="notes.wav: not a readable audio file"):
        audio_info(path)


def test_truncated_header(pcm_wav, tmp_path):
    path = tmp_path / "header.wav"
    path.write_bytes(pcm_wav.read_bytes()[:30])
    with pytest.raises(DataError, match="header.wav: not a readable audio file"):
        load_audio(path)


def test_truncated_data(pcm_wav, tmp_path):
    path = tmp_path / "cut.wav"
    data = pcm_wav.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut.wav: truncated audio file \(header declares 32000 data bytes"):
        load_audio(path)
    with pytest.raises(DataError, match="truncated"):
        audio_info(path)


def test_multichannel_files_in_a_dcase_folder_say_once_which_channel_is_used(tmp_path, caplog):
    import logging

    import soundfile as sf

    from hybrid_asd.data import audio as audio_module

    audio_module._CHANNEL_NOTES.clear()
    folder = tmp_path / "fan" / "train"
    folder.mkdir(parents=True)
    for i in range(3):
        sf.write(folder / f"section_00_source_train_normal_{i:04d}_a_1.wav", np.zeros((1600, 4), np.float32), 16000)
    with caplog.at_level(logging.INFO, logger="hybrid_asd.data.audio"):
        for path in sorted(folder.iterdir()):
            load_audio(path, channel=2)
    notes = [r.getMessage() for r in caplog.records if "channels" in r.getMessage()]
    assert len(notes) == 1 and "4 channels: channel 2 is used" in notes[0]


def test_multichannel_note_names_mean_and_all(tmp_path, caplog):
    import logging

    import soundfile as sf

    from hybrid_asd.data import audio as audio_module

    audio_module._CHANNEL_NOTES.clear()
    path = tmp_path / "fan" / "train" / "section_00_source_train_normal_0000_a_1.wav"
    path.parent.mkdir(parents=True)
    sf.write(path, np.zeros((1600, 2), np.float32), 16000)
    with caplog.at_level(logging.INFO, logger="hybrid_asd.data.audio"):
        assert load_audio(path, channel="mean").shape == (1600,)
        assert load_audio(path, channel="all").shape == (2, 1600)
        load_audio(path, channel="all")  # said once per setting
    notes = [r for r in caplog.records if "channels" in r.getMessage()]
    assert [r.getMessage().split(": ", 1)[1] for r in notes] == [
        "the mean of the 2 channels is used (data.channel; said once for all such files)",
        "all 2 channels are used (one log-mel plane each) (data.channel; said once for all such files)"]
    assert all(r.levelno == logging.INFO for r in notes)  # every channel used: nothing to warn about
