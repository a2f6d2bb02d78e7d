"""Classification heads of the feature extractor, chosen by name (``extractor.head.name``).

Every head maps embeddings ``(B, D)`` to scaled class logits ``(B, n_classes)`` and offers

- ``forward(embeddings, labels=None)``: logits; ``labels`` (class ids ``(B,)`` or soft targets
  ``(B, n_classes)``, e.g. from mixup) switch on the margin (ArcFace) and, in training mode, the
  adaptive scale update (AdaCos heads);
- ``loss(embeddings, labels, soft_labels=None)``: cross-entropy (soft cross-entropy with soft labels);
- ``class_probabilities(embeddings)``: softmax over classes;
- ``anomaly_scores(embeddings, classes)``: one outlier-exposure score per row, higher = more
  anomalous, where ``classes`` names the classes of the row's own section (ids ``(B,)`` or a
  boolean mask ``(B, n_classes)``; a section owns several classes under the label schemes
  ``section_domain`` and ``section_attribute_domain``).

Heads: ``softmax`` (linear layer, the MobileNetV2 baseline), ``arcface`` (Deng et al. 2019),
``adacos`` (Zhang et al. 2019) and ``subcluster_adacos`` (Wilkinghoff 2021). Heads run in
float32 even under mixed precision (acos and the scale update need the range).
"""

from __future__ import annotations

import math
import sys
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from hybrid_asd.errors import ConfigError
from hybrid_asd.registry import Registry, check_kwargs
from hybrid_asd.settings import InvalidKey

HEADS: Registry[nn.Module] = Registry("head")

FLOAT_EPS = sys.float_info.epsilon  # the baseline's clamp in log((1 - p) / p)
_RESERVED = ("embedding_dim", "n_classes")


def soft_targets(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class ids ``(B,)`` -> one-hot float ``(B, C)``; soft targets ``(B, C)`` pass through."""
    if labels.dim() == 1:
        return F.one_hot(labels.long(), n_classes).float()
    return labels.float()


def class_mask(classes: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class ids ``(B,)`` or a mask ``(B, C)`` -> boolean mask ``(B, C)``."""
    if classes.dim() == 1:
        return F.one_hot(classes.long(), n_classes).bool()
    if classes.shape[1] != n_classes:
        raise ValueError(f"class mask has {classes.shape[1]} columns, head has {n_classes} classes")
    return classes.bool()


class Head(nn.Module):
    """Common interface; subclasses implement ``forward`` and ``anomaly_scores``."""

    angular = False  # angular heads: embeddings are compared by cosine (L2-normalised)

    def __init__(self, embedding_dim: int, n_classes: int):
        super().__init__()
        if n_classes < 1:
            raise ConfigError("a head needs at least one class")
        self.embedding_dim = int(embedding_dim)
        self.n_classes = int(n_classes)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def loss_from_logits(
        self, logits: torch.Tensor, labels: torch.Tensor, soft_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean cross-entropy; with ``soft_labels`` the soft cross-entropy ``-sum(t * log p)``."""
        logits = logits.float()
        if soft_labels is not None:
            return -(soft_labels.float() * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        return F.cross_entropy(logits, labels.long())

    def loss(
        self, embeddings: torch.Tensor, labels: torch.Tensor, soft_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = self.forward(embeddings, soft_labels if soft_labels is not None else labels)
        return self.loss_from_logits(logits, labels, soft_labels)

    @torch.no_grad()
    def class_probabilities(self, embeddings: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(embeddings).float(), dim=1)

    def anomaly_scores(self, embeddings: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@HEADS.register("softmax")
class SoftmaxHead(Head):
    """A linear layer + softmax cross-entropy: the MobileNetV2 baseline's section classifier.

    OE score per row: ``log(max(1 - p, eps)) - log(max(p, eps))`` with ``p`` the probability of
    the row's own section and ``eps`` the float64 machine epsilon, as in the official baseline
    (``01_test.py``); a clip's score is the mean over its patches (see ``embed``). Where a section
    owns several classes, ``p`` is the sum of their probabilities. Computed in float64 with
    ``1 - p`` taken as the other classes' probability mass (the same number, without the
    cancellation of ``1 - p`` near ``p = 1``; the baseline's float32 saturated at ``1 - p < 6e-8``).
    """

    def __init__(self, embedding_dim: int, n_classes: int, bias: bool = True):
        super().__init__(embedding_dim, n_classes)
        self.linear = nn.Linear(embedding_dim, n_classes, bias=bias)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(embeddings.device.type, enabled=False):
            return self.linear(embeddings.float())

    @torch.no_grad()
    def anomaly_scores(self, embeddings: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        mask = class_mask(classes, self.n_classes).to(embeddings.device)
        prob = torch.softmax(self.forward(embeddings).double(), dim=1)
        p = (prob * mask).sum(dim=1)
        rest = (prob * ~mask).sum(dim=1)  # = 1 - p, without cancellation when p is close to 1
        return torch.log(torch.clamp(rest, min=FLOAT_EPS)) - torch.log(torch.clamp(p, min=FLOAT_EPS))


class AngularHead(Head):
    """Heads on the cosine between L2-normalised embeddings and class centres.

    Centres are stored class-major: row ``c * K + k`` is sub-cluster ``k`` of class ``c``.
    OE score: the cosine distance to the nearest centre (over sub-clusters) of the row's section.
    """

    angular = True

    def __init__(self, embedding_dim: int, n_classes: int, n_subclusters: int = 1, trainable_centres: bool = True):
        super().__init__(embedding_dim, n_classes)
        if int(n_subclusters) < 1:
            raise ConfigError(f"n_subclusters must be >= 1, got {n_subclusters}")
        self.n_subclusters = int(n_subclusters)
        weight = torch.empty(self.n_classes * self.n_subclusters, self.embedding_dim)
        nn.init.xavier_uniform_(weight)
        self.centres = nn.Parameter(weight, requires_grad=bool(trainable_centres))

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, C * K)`` cosines between embeddings and every (sub-cluster) centre."""
        x = F.normalize(embeddings.float(), dim=1)
        return x @ F.normalize(self.centres.float(), dim=1).t()

    def _expand(self, per_class: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` -> ``(B, C * K)`` in the class-major centre layout."""
        return per_class.repeat_interleave(self.n_subclusters, dim=1)

    @torch.no_grad()
    def anomaly_scores(self, embeddings: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        with torch.autocast(embeddings.device.type, enabled=False):
            cos = self.cosines(embeddings)
        mask = self._expand(class_mask(classes, self.n_classes).to(cos.device))
        return 1.0 - cos.masked_fill(~mask, -2.0).max(dim=1).values


@HEADS.register("arcface")
class ArcFaceHead(AngularHead):
    """Additive angular margin (Deng et al. 2019): target logit ``s * cos(theta + m)``.

    With soft targets ``t`` (mixup) the margin is blended: ``s * (cos + t * (cos(theta + m) - cos))``.
    Past ``theta = pi - m`` the usual linear fallback ``cos - m * sin(m)`` keeps the logit monotonic.
    """

    def __init__(self, embedding_dim: int, n_classes: int, margin: float = 0.5, scale: float = 30.0):
        super().__init__(embedding_dim, n_classes, n_subclusters=1, trainable_centres=True)
        self.margin = float(margin)
        self.scale = float(scale)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(embeddings.device.type, enabled=False):
            cos = self.cosines(embeddings)
            if labels is None or self.margin == 0.0:
                return self.scale * cos
            t = soft_targets(labels, self.n_classes).to(cos.device)
            sin = torch.sqrt(torch.clamp(1.0 - cos * cos, min=0.0))
            phi = cos * math.cos(self.margin) - sin * math.sin(self.margin)
            phi = torch.where(cos > math.cos(math.pi - self.margin), phi, cos - self.margin * math.sin(self.margin))
            return self.scale * (cos + t * (phi - cos))


@HEADS.register("subcluster_adacos")
class SubclusterAdaCosHead(AngularHead):
    """Sub-cluster AdaCos (Wilkinghoff, "Sub-cluster AdaCos", IJCNN 2021).

    Each class owns ``n_subclusters`` centres, fixed after a random (Xavier) initialisation as
    in the paper (``trainable_centres=True`` learns them). Class logits aggregate the scaled
    sub-cluster cosines: ``aggregation="logsumexp"`` (default) makes the class probability the sum
    of its sub-clusters' softmax probabilities, as in the paper; ``"max"`` takes the nearest
    sub-cluster. The scale ``s`` (a buffer) starts at ``sqrt(2) * log(C * K - 1)`` and is updated
    in training from each batch as in AdaCos (Zhang et al. 2019), without gradient:
    ``s = log(B_avg) / cos(min(pi / 4, theta_med))``, ``B_avg`` the batch mean of the summed
    ``exp(s * cos)`` over non-target centres and ``theta_med`` the median angle to the target
    class (its nearest sub-cluster; mixup targets weight the angles of both classes).
    """

    def __init__(
        self,
        embedding_dim: int,
        n_classes: int,
        n_subclusters: int = 16,
        trainable_centres: bool = False,
        aggregation: str = "logsumexp",
        adaptive_scale: bool = True,
        scale: float | None = None,
    ):
        super().__init__(embedding_dim, n_classes, n_subclusters, trainable_centres)
        if aggregation not in ("logsumexp", "max"):
            raise ConfigError(f"extractor.head.conf.aggregation must be 'logsumexp' or 'max', got {aggregation!r}")
        self.aggregation = aggregation
        self.adaptive_scale = bool(adaptive_scale)
        n_centres = self.n_classes * self.n_subclusters
        # Zhang et al.'s initial scale; it is 0 or undefined for fewer than 3 centres, hence the floor.
        s_init = math.sqrt(2.0) * math.log(n_centres - 1) if n_centres > 2 else 1.0
        self.register_buffer("scale", torch.tensor(float(scale) if scale is not None else max(s_init, 1.0)))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(embeddings.device.type, enabled=False):
            cos = self.cosines(embeddings)
            if labels is not None and self.training and self.adaptive_scale:
                self._update_scale(cos.detach(), soft_targets(labels, self.n_classes).to(cos.device))
            logits = (self.scale * cos).view(-1, self.n_classes, self.n_subclusters)
            if self.aggregation == "max":
                return logits.max(dim=2).values
            return torch.logsumexp(logits, dim=2)

    @torch.no_grad()
    def _update_scale(self, cos: torch.Tensor, targets: torch.Tensor) -> None:
        non_target = self._expand(targets) == 0
        if not bool(non_target.any()):
            return  # a single centre: nothing to contrast with
        theta = torch.acos(torch.clamp(cos, -1.0 + 1e-7, 1.0 - 1e-7))
        theta_class = theta.view(-1, self.n_classes, self.n_subclusters).min(dim=2).values
        theta_med = torch.median((targets * theta_class).sum(dim=1) / targets.sum(dim=1).clamp(min=1e-12))
        # log of the batch-mean of sum_j exp(s * cos_j) over non-target centres, computed stably
        scaled = (self.scale * cos).masked_fill(~non_target, float("-inf"))
        log_b_avg = torch.logsumexp(scaled.flatten(), dim=0) - math.log(cos.shape[0])
        new_scale = log_b_avg / torch.cos(torch.clamp(theta_med, max=math.pi / 4))
        if torch.isfinite(new_scale) and new_scale > 0:
            self.scale.copy_(new_scale)


@HEADS.register("adacos")
class AdaCosHead(SubclusterAdaCosHead):
    """AdaCos (Zhang et al., CVPR 2019): one trainable centre per class, adaptive scale."""

    def __init__(self, embedding_dim: int, n_classes: int, adaptive_scale: bool = True, scale: float | None = None):
        super().__init__(
            embedding_dim, n_classes, n_subclusters=1, trainable_centres=True,
            adaptive_scale=adaptive_scale, scale=scale,
        )


def check_head(name: str, conf: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`InvalidKey` (``name`` or ``conf``) for an unknown head or ``conf`` keys it does not take."""
    if name not in HEADS:
        raise InvalidKey("name", name, f"unknown head {name!r}; known: {', '.join(HEADS.names())}")
    conf = dict(conf or {})
    reserved = sorted(set(conf) & set(_RESERVED))
    if reserved:
        raise InvalidKey("conf", conf, f"{reserved} are set by the extractor (embedding_dim, label scheme), "
                                       "not the head conf")
    try:
        check_kwargs(HEADS.get(name), conf, where=f"head {name!r} conf")
    except ConfigError as exc:
        raise InvalidKey("conf", conf, str(exc)) from None


def build_head(name: str, embedding_dim: int, n_classes: int, conf: Mapping[str, Any] | None = None) -> Head:
    """A head by name; unknown names and ``conf`` keys raise a :class:`ConfigError`."""
    try:
        check_head(name, conf)
    except InvalidKey as exc:
        raise ConfigError(f"extractor.head.{exc}") from None
    return HEADS.build(
        name, dict(conf or {}), where=f"extractor.head.conf ({name})", embedding_dim=embedding_dim,
        n_classes=n_classes,
    )
