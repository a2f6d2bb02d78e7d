"""The detector registry: configs choose detectors by name (``name:`` + ``conf:``).

Built-in detectors register themselves when ``hybrid_asd.detectors`` is imported:
``knn``, ``gmm``, ``mahalanobis``, ``flow``, ``ae``, ``idnn``.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from hybrid_asd.registry import Registry, check_kwargs

DETECTORS: Registry[Any] = Registry("detector")

D = TypeVar("D")


def register(cls: D) -> D:
    """Class decorator: register a Detector subclass under its ``name`` attribute."""
    DETECTORS.register(cls.name)(cls)  # type: ignore[attr-defined]
    return cls


def build_detector(name: str, conf: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """Instantiate detector ``name`` with ``conf``; ``seed`` fills a ``seed`` parameter not set in conf.

    Unknown names and keys, and bad values, raise a ConfigError naming them.
    """
    import hybrid_asd.detectors  # noqa: F401 - make sure the built-ins are registered

    cls = DETECTORS.get(name)
    conf = dict(conf or {})
    check_kwargs(cls, conf, where=f"detector {name!r} conf")
    if "seed" in inspect.signature(cls).parameters and "seed" not in conf:
        conf["seed"] = seed
    detector = cls(**conf)
    detector._validate_params()
    return detector
