"""Defaults of the ``extractor`` config section. ``extractor: null`` in a config means no extractor.

The values are those of the official DCASE 2021 Task 2 MobileNetV2 baseline (Adam, lr 1e-5,
20 epochs, batch 32, section labels, softmax). Patch sizes come from the ``features`` section
(``patch_frames``, ``patch_hop``).
"""

EXTRACTOR_DEFAULTS = {
    # any timm model name (created with pretrained=False, in_chans=1) or a registered network
    # such as tiny_cnn; conf is passed to timm.create_model (e.g. drop_rate) or the network
    "backbone": {"name": "mobilenetv2_100", "conf": {}},
    # softmax | arcface | adacos | subcluster_adacos; conf is passed to the head class
    "head": {"name": "softmax", "conf": {}},
    "embedding_dim": 128,
    "labels": "section",  # section | section_domain | section_attribute_domain
    "input": "patches",  # patches (features.patch_frames, hop features.patch_hop) | clip (whole log-mel)
    "input_norm": True,  # standardise inputs with the training log-mels' global mean and std
    "mixup": 0.0,  # mixup alpha; 0 disables
    "optimizer": {"name": "adam", "lr": 1.0e-5, "weight_decay": 0.0},  # adam | adamw
    # none | cosine | step; stepped once per epoch after a linear warm-up of warmup_epochs;
    # step: lr *= gamma every step_size epochs; cosine: from lr down to lr * min_lr_ratio
    "scheduler": {"name": "none", "warmup_epochs": 0, "step_size": 10, "gamma": 0.1, "min_lr_ratio": 0.0},
    "epochs": 20,
    "batch_size": 32,
    "val_fraction": 0.1,  # normal training clips held out per class (by clip) for validation
    "target_oversample": 1,  # repeat factor of target-domain training clips
    "max_patches_per_clip": None,  # subsample patches per clip per epoch (speed); null = all
    "num_workers": 0,  # DataLoader workers (started with the "spawn" method when > 0)
    "amp": True,  # mixed precision (float16 autocast + GradScaler) on CUDA only
    "extract_batch_size": 256,  # patches per forward pass when extracting embeddings
}
