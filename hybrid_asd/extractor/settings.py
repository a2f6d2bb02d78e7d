"""The ``extractor`` config section (``extractor: null`` means no extractor).

The defaults are those of the official DCASE 2021 Task 2 MobileNetV2 baseline (Adam, lr 1e-5,
20 epochs, batch 32, section labels, softmax). Patch sizes come from the ``features`` section
(``patch_frames``, ``patch_hop``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from hybrid_asd.extractor.labels import SCHEMES
from hybrid_asd.settings import (
    Bool, Component, Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Section,
)

INPUT_MODES = ("patches", "clip", "waveform")
TARGET_VALIDATION = ("crops", "clips", "none")
OPTIMIZER_NAMES = ("adam", "adamw")
SCHEDULERS = ("none", "cosine", "step")


class OptimizerSettings(Section):
    name: Literal[OPTIMIZER_NAMES] = "adam"  # type: ignore[valid-type]
    lr: PositiveFloat = 1.0e-5
    weight_decay: NonNegativeFloat = 0.0


class SchedulerSettings(Section):
    """Stepped once per epoch after a linear warm-up of ``warmup_epochs``; ``step``: lr *= gamma
    every ``step_size`` epochs; ``cosine``: from lr down to lr * ``min_lr_ratio``."""

    name: Literal[SCHEDULERS] = "none"  # type: ignore[valid-type]
    warmup_epochs: NonNegativeInt = 0
    step_size: PositiveInt = 10
    gamma: PositiveFloat = 0.1
    min_lr_ratio: Fraction = 0.0


class ExtractorSettings(Section):
    # any timm model name (created with pretrained=False, in_chans=1) or a registered network such
    # as tiny_cnn; conf is passed to timm.create_model (e.g. drop_rate) or the network
    backbone: Component = Component(name="mobilenetv2_100")
    # softmax | arcface | adacos | subcluster_adacos; conf is passed to the head class
    head: Component = Component(name="softmax")
    embedding_dim: PositiveInt = 128
    labels: Literal[SCHEMES] = "section"  # type: ignore[valid-type]
    # other machine types under data.root whose normal training clips join the section-ID task as more classes
    # ("all": every machine type there); the experiment's own type always trains, and only its clips are
    # embedded and scored (docs/extractor.md, "Training on several machine types")
    train_machines: list[str] | Literal["all"] = Field(default_factory=list)
    # patches | clip (the whole log-mel) | waveform (whole-clip waveforms, for the multibranch network)
    input: Literal[INPUT_MODES] = "patches"  # type: ignore[valid-type]
    input_norm: Bool = True  # standardise inputs with the training log-mels' global mean and std
    mixup: NonNegativeFloat = 0.0  # mixup alpha; 0 disables
    optimizer: OptimizerSettings = Field(default_factory=OptimizerSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    epochs: PositiveInt = 20
    # which epoch's weights the checkpoint keeps: the last, or the one with the best validation accuracy
    # (section-ID accuracy on the held-out normal clips; needs val_fraction > 0)
    keep: Literal["last", "best_val"] = "last"
    batch_size: PositiveInt = 32
    val_fraction: Fraction = 0.1  # normal training clips held out per class (by clip) for validation
    # how validation sees the target domain of a class whose few target clips got no validation clip:
    # crops: the last patch of each of its target clips is held out (the clips stay training clips);
    # clips: one of its target clips is held out whole; none: not at all (docs/extractor.md)
    target_validation: Literal[TARGET_VALIDATION] = "crops"  # type: ignore[valid-type]
    target_oversample: PositiveInt = 1  # repeat factor of target-domain training clips
    max_patches_per_clip: PositiveInt | None = None  # subsample patches per clip per epoch (speed); null = all
    num_workers: NonNegativeInt = 0  # DataLoader workers (started with the "spawn" method when > 0)
    amp: Bool = True  # mixed precision (float16 autocast + GradScaler) on CUDA only
    # memory layout of the 2-D convolutions (log-mel inputs): channels-last (NHWC) trains 1.2-1.3x faster on CPU
    # (oneDNN kernels; tiny_cnn, mobilenetv2_100: docs/benchmarks.md) and is the layout tensor cores want under AMP;
    # false: PyTorch's default NCHW. Results differ only by float rounding. Waveform networks ignore it.
    channels_last: Bool = True
    extract_batch_size: PositiveInt = 256  # patches per forward pass when extracting embeddings

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, backbone: Component) -> Component:
        # Lazy: backbones.py imports torch, and timm for timm names (seconds); only configs with an
        # extractor pay for it.
        from hybrid_asd.extractor.backbones import check_backbone

        check_backbone(backbone.name, backbone.conf)
        return backbone

    @field_validator("head")
    @classmethod
    def _known_head(cls, head: Component) -> Component:
        from hybrid_asd.extractor.heads import check_head  # lazy: heads.py imports torch (seconds)

        check_head(head.name, head.conf)
        return head

    @field_validator("train_machines")
    @classmethod
    def _machine_names(cls, machines: list[str] | str) -> list[str] | str:
        if isinstance(machines, str):
            return machines
        for name in machines:
            if not name or name != name.strip() or "/" in name or name.startswith("."):
                raise ValueError(f"{name!r} is not a machine type folder name")
        if len(set(machines)) != len(machines):
            raise ValueError(f"a machine type is named twice: {machines}")
        return machines

    @model_validator(mode="after")
    def _best_epoch_needs_validation(self) -> "ExtractorSettings":
        if self.keep == "best_val" and self.val_fraction == 0:
            raise ValueError("keep: best_val chooses the epoch by validation accuracy and needs val_fraction > 0")
        return self

    @model_validator(mode="after")
    def _backbone_fits(self) -> "ExtractorSettings":
        # Lazy, as above: backbones.py imports torch.
        from hybrid_asd.extractor.backbones import check_backbone_fits

        check_backbone_fits(self)
        return self
