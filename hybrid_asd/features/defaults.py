"""Defaults of the ``features`` config section (official baselines' front end)."""

FEATURE_DEFAULTS = {
    "n_fft": 1024,
    "hop_length": 512,
    "n_mels": 128,
    "power": 2.0,
    "fmin": 0.0,
    "fmax": None,  # null: sample_rate / 2
    "center": True,  # centred frames, as librosa: T = 1 + L // hop_length (313 for 10 s)
    "pad_mode": "reflect",  # librosa <= 0.9 default, what the official baselines ran; or "constant"
    "patch_frames": 64,  # P, MobileNetV2 baseline
    "patch_hop": 8,  # L, MobileNetV2 baseline: floor((T - P) / L) + 1 = 32 patches for 10 s
    "stack_frames": 5,  # AE baseline: 5 x 128 = 640 inputs
    "cache_dir": None,  # null: $HYBRID_ASD_CACHE or ~/.cache/hybrid_asd/features
}
