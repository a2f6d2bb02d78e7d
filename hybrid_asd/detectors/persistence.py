"""How a saved detector folder is read back: ``params.json`` names the class that saved it.

Every class that can be saved registers a loader here under its saved name (plain detectors
through :func:`hybrid_asd.detectors.registry.register`, the domain-adaptive wrapper itself), so
:func:`load_detector` opens any saved folder without knowing the classes in advance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, TypeVar

from hybrid_asd.errors import DataError
from hybrid_asd.registry import Registry

PARAMS_FILE = "params.json"
FORMAT_VERSION = 1

# saved name -> class with a ``load(directory)`` classmethod
LOADERS: Registry[Any] = Registry("saved detector")

C = TypeVar("C")


def register_loader(name: str) -> Callable[[C], C]:
    """Class decorator: folders saved under ``name`` are read by the class's ``load``."""
    return LOADERS.register(name)  # type: ignore[return-value]


def read_saved_params(directory: str | Path) -> dict[str, Any]:
    """Read and check ``params.json`` of a saved detector."""
    path = Path(directory) / PARAMS_FILE
    if not path.is_file():
        raise DataError(f"{path}: no saved detector here (params.json missing; was save() interrupted?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    for key in ("name", "params"):
        if key not in meta:
            raise DataError(f"{path}: key {key!r} missing")
    return meta


def load_detector(directory: str | Path) -> Any:
    """Load any saved detector (or domain-adaptive wrapper), dispatching on the saved name."""
    meta = read_saved_params(directory)
    return LOADERS.get(meta["name"]).load(directory)
