"""Networks of the feature extractor: backbones and the whole model (backbone + head).

A backbone maps log-mel inputs ``(B, 1, n_mels, frames)`` to embeddings ``(B, embedding_dim)``
(``(B, channels, n_mels, frames)`` with ``data.channel: all``: ``in_channels`` input planes).
Any timm model name works (created offline: ``pretrained=False``, ``in_chans`` input planes, no
classifier) followed by a linear projection and batch norm to ``embedding_dim``; small networks
registered in :data:`BACKBONES` (``tiny_cnn`` for tests) are chosen by the same name field.
``multibranch`` (:mod:`hybrid_asd.extractor.multibranch`) takes waveform crops ``(B, 1, samples)``
instead (``extractor.input: waveform``).
"""

from __future__ import annotations

import difflib
import inspect
import logging
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from hybrid_asd.errors import ConfigError
from hybrid_asd.extractor.heads import build_head
from hybrid_asd.extractor.multibranch import MultiBranchNet
from hybrid_asd.registry import Registry, check_kwargs
from hybrid_asd.settings import InvalidKey

if TYPE_CHECKING:  # annotations only: extractor.settings checks names with this module
    from hybrid_asd.data.settings import DataSettings
    from hybrid_asd.extractor.settings import ExtractorSettings

log = logging.getLogger(__name__)

BACKBONES: Registry[nn.Module] = Registry("backbone")


class Projection(nn.Sequential):
    """Linear projection + batch norm from a network's pooled features to the embedding."""

    def __init__(self, in_features: int, embedding_dim: int):
        super().__init__(nn.Linear(in_features, embedding_dim), nn.BatchNorm1d(embedding_dim))


class TimmBackbone(nn.Module):
    """A timm model without classifier (global pooling kept) plus a :class:`Projection`."""

    def __init__(self, name: str, embedding_dim: int, in_channels: int = 1, **timm_kwargs: Any):
        super().__init__()
        import timm  # lazy: importing timm takes seconds, and only timm backbones need it

        try:
            self.body = timm.create_model(name, pretrained=False, in_chans=in_channels, num_classes=0, **timm_kwargs)
        except TypeError as exc:  # timm passes unknown kwargs on to the model class
            raise ConfigError(
                f"extractor.backbone.conf for timm model {name!r}: {exc} (keys given: {sorted(timm_kwargs)})"
            ) from None
        self.projection = Projection(pooled_features(self.body), embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.body(x))


def pooled_features(body: nn.Module) -> int:
    """Width of a classifier-less timm model's output. ``num_features`` is not it for models with
    a head stage after pooling (MobileNetV3's conv_head), so prefer ``head_hidden_size``."""
    return int(getattr(body, "head_hidden_size", None) or body.num_features)


@BACKBONES.register("tiny_cnn")
class TinyCNN(nn.Module):
    """A two-layer CNN (a few thousand weights) for tests and smoke runs."""

    def __init__(self, embedding_dim: int, channels: tuple[int, ...] | list[int] = (8, 16), in_channels: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = in_channels
        for ch in channels:
            layers += [nn.Conv2d(in_ch, ch, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU()]
            in_ch = ch
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.projection = Projection(in_ch, embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.body(x))


BACKBONES.register("multibranch")(MultiBranchNet)  # whole-clip waveforms (hybrid_asd.extractor.multibranch)


def check_backbone(name: str, conf: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`InvalidKey` (``name`` or ``conf``) unless ``name`` is a registered network or a
    timm model; the ``conf`` keys of a registered network are checked too (timm's are not known
    before the model is built), and their types and ranges where the network has a ``check_conf``."""
    if name in BACKBONES:
        factory = BACKBONES.get(name)
        try:
            check_kwargs(factory, {**(conf or {}), "embedding_dim": 0}, where=f"backbone {name!r} conf")
        except ConfigError as exc:
            raise InvalidKey("conf", dict(conf or {}), str(exc)) from None
        if hasattr(factory, "check_conf"):
            try:
                factory.check_conf(conf or {})
            except InvalidKey as exc:
                raise InvalidKey(f"conf.{exc.key}", exc.value, exc.message) from None
        return
    import timm  # lazy: importing timm takes seconds, and only timm backbone names need it

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.4)
        examples = close or ["mobilenetv2_100", "resnet18", "efficientnet_b0"]
        raise InvalidKey("name", name, f"unknown backbone {name!r}: neither a registered network "
                                       f"({', '.join(BACKBONES.names())}) nor a timm model; e.g. {', '.join(examples)} "
                                       "(see timm.list_models())")


def backbone_input(name: str) -> str:
    """What a backbone takes: ``"waveform"`` (``extractor.input: waveform``) or ``"logmel"``
    (patches or whole log-mels; every timm model)."""
    return getattr(BACKBONES.get(name), "input_kind", "logmel") if name in BACKBONES else "logmel"


def check_backbone_fits(extractor: ExtractorSettings) -> None:
    """Raise :class:`InvalidKey` (relative to the extractor section) where the backbone does not fit
    the section's other keys: its input kind against ``input``, and the network's own constraints."""
    name = extractor.backbone.name
    kind = backbone_input(name)
    if kind == "waveform" and extractor.input != "waveform":
        raise InvalidKey("input", extractor.input, f"backbone {name!r} takes waveforms; set extractor.input: waveform")
    if kind != "waveform" and extractor.input == "waveform":
        raise InvalidKey("input", extractor.input, f"backbone {name!r} takes log-mels (patches or clip); waveform "
                                                   "input needs a waveform network (multibranch)")
    if name in BACKBONES and hasattr(BACKBONES.get(name), "check_extractor"):
        BACKBONES.get(name).check_extractor(extractor)


def check_backbone_data(extractor: ExtractorSettings, data: DataSettings) -> None:
    """Raise :class:`InvalidKey` (relative to the extractor section) where a registered network's conf
    contradicts the ``data`` section (e.g. its sample rate)."""
    name = extractor.backbone.name
    if name in BACKBONES and hasattr(BACKBONES.get(name), "check_data"):
        try:
            BACKBONES.get(name).check_data(extractor.backbone.conf, data)
        except InvalidKey as exc:
            raise InvalidKey(f"backbone.conf.{exc.key}", exc.value, exc.message) from None


def build_backbone(name: str, embedding_dim: int, conf: Mapping[str, Any] | None = None,
                   in_channels: int = 1) -> nn.Module:
    """A backbone by name: a registered network, else a timm model (offline).

    Unknown names raise a :class:`ConfigError` listing close valid names; unknown ``conf`` keys
    raise one naming the keys. ``in_channels`` > 1 (``data.channel: all``) needs a timm model or a
    registered network that takes ``in_channels``.
    """
    conf = dict(conf or {})
    try:
        check_backbone(name, conf)
    except InvalidKey as exc:
        raise ConfigError(f"extractor.backbone.{exc}") from None
    if name in BACKBONES:
        planes = {}
        if in_channels != 1:
            if "in_channels" not in inspect.signature(BACKBONES.get(name)).parameters:
                raise ConfigError(f"extractor.backbone {name!r} takes one input channel; data.channel: all gave "
                                  f"{in_channels} (use a timm model or tiny_cnn, or data.channel: 0 | mean)")
            planes = {"in_channels": in_channels}
        return BACKBONES.build(name, conf, where=f"extractor.backbone.conf ({name})", embedding_dim=embedding_dim,
                               **planes)
    return TimmBackbone(name, embedding_dim, in_channels=in_channels, **conf)


class ExtractorModel(nn.Module):
    """Backbone + head, with the input standardisation kept as buffers (saved with the weights).

    ``forward(x, labels)`` returns ``(embeddings, logits)``; ``labels`` (hard ids or soft
    targets) only matter for heads with a margin or an adaptive scale during training.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, channels_last: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = head
        # NHWC layout for 2-D convolutions (``extractor.channels_last``): the weights are converted here and
        # every 4-D input in embed(), so training, extraction and monitoring all run in the same layout
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)  # converts 4-D weights only
        self.register_buffer("input_mean", torch.zeros(()))
        self.register_buffer("input_std", torch.ones(()))

    def set_input_stats(self, mean: float, std: float) -> None:
        self.input_mean.fill_(float(mean))
        self.input_std.fill_(max(float(std), 1e-8))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, n_mels, frames)`` log-mels -> ``(B, embedding_dim)`` embeddings."""
        x = (x - self.input_mean) / self.input_std
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed(x)
        return emb, self.head(emb, labels)


def build_model(extractor: ExtractorSettings, n_classes: int, in_channels: int = 1) -> ExtractorModel:
    """The extractor network of an ``extractor`` config section, for ``n_classes`` classes and
    ``in_channels`` input planes (``data.channel: all``)."""
    dim = extractor.embedding_dim
    backbone = build_backbone(extractor.backbone.name, dim, extractor.backbone.conf, in_channels=in_channels)
    head = build_head(extractor.head.name, dim, n_classes, extractor.head.conf)
    return ExtractorModel(backbone, head, channels_last=extractor.channels_last and extractor.input != "waveform")
