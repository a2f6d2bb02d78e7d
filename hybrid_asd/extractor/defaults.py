"""Defaults of the ``extractor`` config section. ``extractor: null`` in a config means no extractor."""

EXTRACTOR_DEFAULTS = {
    "backbone": {"name": "mobilenetv2_100", "conf": {}},
    "head": {"name": "softmax", "conf": {}},
    "embedding_dim": 128,
    "labels": "section",  # section | section_domain | section_attribute_domain
    "input": "patches",  # patches (64 frames, hop 8) | clip (whole log-mel)
    "mixup": 0.0,  # mixup alpha; 0 disables
    "optimizer": {"name": "adam", "lr": 1.0e-5, "weight_decay": 0.0},
    "scheduler": {"name": "none", "warmup_epochs": 0},
    "epochs": 20,
    "batch_size": 32,
    "val_fraction": 0.1,
    "target_oversample": 1,  # repeat factor of target-domain training clips
    "max_patches_per_clip": None,  # subsample patches per clip per epoch (speed); null = all
    "num_workers": 0,
    "amp": True,  # mixed precision on CUDA only
}
