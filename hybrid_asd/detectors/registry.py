"""The detector registry: configs choose detectors by name (``name:`` + ``conf:``).

Built-in detectors register themselves when ``hybrid_asd.detectors`` is imported (Python
imports a package before any of its modules, so every lookup sees them): ``knn``, ``gmm``,
``mahalanobis``, ``flow``, ``ae``, ``idnn``.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, TypeVar

from hybrid_asd.detectors.persistence import register_loader
from hybrid_asd.registry import Registry, check_kwargs

DETECTORS: Registry[Any] = Registry("detector")

D = TypeVar("D")


def register(cls: D) -> D:
    """Class decorator: register a Detector subclass under its ``name`` attribute (to build and to load)."""
    DETECTORS.register(cls.name)(cls)  # type: ignore[attr-defined]
    register_loader(cls.name)(cls)  # type: ignore[attr-defined]
    return cls


def build_detector(name: str, conf: Mapping[str, Any] | None = None, seed: int = 0) -> Any:
    """Instantiate detector ``name`` with ``conf``; ``seed`` fills a ``seed`` parameter not set in conf.

    Unknown names and keys, and bad values, raise a ConfigError naming them.
    """
    cls = DETECTORS.get(name)
    conf = dict(conf or {})
    check_kwargs(cls, conf, where=f"detector {name!r} conf")
    if "seed" in inspect.signature(cls).parameters and "seed" not in conf:
        conf["seed"] = seed
    detector = cls(**conf)
    detector._validate_params()
    return detector
