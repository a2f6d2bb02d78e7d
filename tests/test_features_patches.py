"""Patches, frame stacking and clip statistics against hand computations and the baselines' loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybrid_asd.features.patches import clip_statistics, make_patches, n_patches, stack_frames


def _logmel(n_mels: int = 128, n_frames: int = 313, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(-40.0, 10.0, (n_mels, n_frames)).astype(np.float32)


def _baseline_file_to_vectors(logmel: np.ndarray, n_frames: int) -> np.ndarray:
    """Literal copy of the loop in the DCASE 2020-2022 baselines' common.file_to_vectors."""
    n_mels = logmel.shape[0]
    dims = n_mels * n_frames
    n_vectors = len(logmel[0, :]) - n_frames + 1
    if n_vectors < 1:
        return np.empty((0, dims))
    vectors = np.zeros((n_vectors, dims))
    for t in range(n_frames):
        vectors[:, n_mels * t : n_mels * (t + 1)] = logmel[:, t : t + n_vectors].T
    return vectors


@pytest.mark.parametrize(
    "n_frames,frames,hop,expected",
    [(313, 64, 8, 32), (376, 64, 8, 40), (64, 64, 8, 1), (71, 64, 8, 1), (72, 64, 8, 2), (313, 64, 1, 250)],
)
def test_patch_count(n_frames, frames, hop, expected):
    assert n_patches(n_frames, frames, hop) == expected
    assert make_patches(_logmel(8, n_frames), frames, hop).shape == (expected, 8, frames)


def test_patch_contents_by_hand():
    logmel = _logmel(16, 100)
    patches = make_patches(logmel, frames=20, hop=7)
    starts = [0, 7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77]  # last start 77 <= 100 - 20 = 80 < 84
    assert patches.shape == (len(starts), 16, 20)
    for i, start in enumerate(starts):
        np.testing.assert_array_equal(patches[i], logmel[:, start : start + 20])
    assert patches.flags.writeable and patches.flags.c_contiguous


def test_patches_match_the_mobilenetv2_baseline_training_data():
    # 00_train.py: file_to_vectors(n_frames=64)[::8], then reshape(n, 64, n_mels): one patch
    # per row in (frames, n_mels) layout, i.e. the transpose of ours.
    logmel = _logmel()
    baseline = _baseline_file_to_vectors(logmel, 64)[::8].reshape(-1, 64, 128)
    ours = make_patches(logmel, frames=64, hop=8)
    assert baseline.shape[0] == ours.shape[0] == 32
    np.testing.assert_array_equal(ours.transpose(0, 2, 1), baseline.astype(np.float32))


def test_batched_and_torch_patches_match_numpy():
    batch = np.stack([_logmel(32, 200, seed=s) for s in range(3)])
    out = make_patches(batch, frames=64, hop=8)
    assert out.shape == (3, n_patches(200), 32, 64)
    for b in range(3):
        np.testing.assert_array_equal(out[b], make_patches(batch[b]))
    out_t = make_patches(torch.from_numpy(batch))
    assert isinstance(out_t, torch.Tensor)
    np.testing.assert_array_equal(out_t.numpy(), out)


def test_short_clip_raises():
    with pytest.raises(ValueError, match="shorter than one patch"):
        make_patches(_logmel(8, 63), frames=64, hop=8)
    with pytest.raises(ValueError, match="shorter than one patch"):
        make_patches(torch.zeros(2, 8, 10))
    with pytest.raises(ValueError):
        make_patches(np.zeros(10))


@pytest.mark.parametrize("n_frames", [1, 5, 64])
def test_stack_frames_matches_baseline_loop(n_frames):
    logmel = _logmel(128, 313)
    ref = _baseline_file_to_vectors(logmel, n_frames)
    ours = stack_frames(logmel, n_frames)
    assert ours.shape == ref.shape == (313 - n_frames + 1, 128 * n_frames)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ref.astype(np.float32))
    ours_t = stack_frames(torch.from_numpy(logmel), n_frames)
    np.testing.assert_array_equal(ours_t.numpy(), ours)


def test_stack_frames_short_clip_is_empty_like_the_baseline():
    out = stack_frames(_logmel(8, 3), 5)
    assert out.shape == (0, 40)
    assert stack_frames(torch.zeros(8, 3), 5).shape == (0, 40)


def test_clip_statistics_by_hand():
    logmel = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 8.0]], dtype=np.float32)
    expected = np.array([2.5, 2.0, np.sqrt(1.25), np.sqrt(12.0)], dtype=np.float32)
    out = clip_statistics(logmel)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(clip_statistics(torch.from_numpy(logmel)).numpy(), expected, rtol=1e-6)
    batch = np.stack([logmel, logmel * 2])
    np.testing.assert_allclose(clip_statistics(batch), np.stack([expected, expected * 2]), rtol=1e-6)


def test_stacked_frame_rows_match_the_baseline_loop_per_clip():
    """The detector stage's preallocated frame matrix equals the baseline's vectors clip by clip."""
    from hybrid_asd.detectors.stage import stacked_frame_rows

    logmels = [_logmel(8, 12, seed=1), _logmel(8, 3, seed=2), _logmel(8, 5, seed=3)]  # clip 1: too short
    rows = stacked_frame_rows(logmels, 5)
    assert rows.X.dtype == np.float32
    np.testing.assert_array_equal(rows.clip_index, [0] * 8 + [2] * 1)
    expected = np.concatenate([_baseline_file_to_vectors(m, 5) for m in logmels])
    np.testing.assert_array_equal(rows.X, expected.astype(np.float32))
    np.testing.assert_array_equal(rows.for_clips(np.array([2])).X, expected[8:].astype(np.float32))
    assert rows.for_clips(np.array([0, 1, 2])).X.shape == rows.X.shape
