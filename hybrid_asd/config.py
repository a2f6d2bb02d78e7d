"""Approach configs: one YAML per approach, nested by stage, with dotted command-line overrides.

Every stage owns its defaults (``hybrid_asd/<stage>/defaults.py``); this module merges a user
YAML over them, rejects keys that do not exist (naming the dotted key), applies overrides such
as ``extractor.epochs=1`` and returns the resolved config that is saved with the outputs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from hybrid_asd.errors import ConfigError

# Keys whose value is free-form (a component's ``conf``, weights by detector id): their
# contents are checked by the component that receives them, not against defaults.
FREE_FORM_KEYS = {"conf", "weights"}


def default_config() -> dict[str, Any]:
    """The full default config (a fresh copy)."""
    from hybrid_asd.data.defaults import DATA_DEFAULTS
    from hybrid_asd.detectors.defaults import DETECTOR_DEFAULTS, DETECTOR_ENTRY_DEFAULTS
    from hybrid_asd.ensemble.defaults import ENSEMBLE_DEFAULTS
    from hybrid_asd.evaluation.defaults import EVALUATION_DEFAULTS
    from hybrid_asd.extractor.defaults import EXTRACTOR_DEFAULTS
    from hybrid_asd.features.defaults import FEATURE_DEFAULTS

    del DETECTOR_ENTRY_DEFAULTS  # list entries are checked in _validate_detectors
    return copy.deepcopy(
        {
            "name": "unnamed",
            "description": "",
            "seed": 0,
            "device": "auto",
            "data": DATA_DEFAULTS,
            "features": FEATURE_DEFAULTS,
            "extractor": EXTRACTOR_DEFAULTS,
            "detectors": DETECTOR_DEFAULTS,
            "ensemble": ENSEMBLE_DEFAULTS,
            "evaluation": EVALUATION_DEFAULTS,
        }
    )


def merge(base: dict[str, Any], update: dict[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base``; keys absent from ``base`` are errors."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in out:
            raise ConfigError(
                f"config key {dotted!r} does not exist; known keys here: {sorted(out)}"
            )
        if isinstance(out[key], dict) and isinstance(value, dict) and key not in FREE_FORM_KEYS:
            out[key] = merge(out[key], value, prefix=dotted + ".")
        elif out[key] is None and isinstance(value, dict) and key == "extractor":
            out[key] = value
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a","b","c"], yaml-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    return key.strip().split("."), yaml.safe_load(raw) if raw != "" else ""


def apply_override(config: dict[str, Any], text: str) -> dict[str, Any]:
    keys, value = parse_override(text)
    out = copy.deepcopy(config)
    node: Any = out
    for i, key in enumerate(keys):
        dotted = ".".join(keys[: i + 1])
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"override {text!r}: {dotted!r} is not a valid list index")
            key = int(key)  # type: ignore[assignment]
        elif not isinstance(node, dict):
            raise ConfigError(f"override {text!r}: {'.'.join(keys[:i])!r} is not a mapping")
        elif key not in node and not _inside_free_form(keys[:i]):
            raise ConfigError(f"config key {dotted!r} does not exist (override {text!r})")
        if last:
            node[key] = value
        else:
            if node[key] is None:
                node[key] = {}
            node = node[key]
    return out


def _inside_free_form(keys: list[str]) -> bool:
    return any(k in FREE_FORM_KEYS for k in keys)


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """Defaults <- YAML file <- overrides; validated. Errors name the offending key."""
    config = default_config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            user = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(user, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        try:
            config = merge(config, user)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    validate(config)  # fills detector entries with their defaults, so overrides can address every key
    for text in overrides:
        config = apply_override(config, text)
    validate(config)
    return config


def validate(config: dict[str, Any]) -> None:
    """Checks that need more than the key tree: detector entries and extractor keys."""
    from hybrid_asd.detectors.defaults import DETECTOR_ENTRY_DEFAULTS
    from hybrid_asd.extractor.defaults import EXTRACTOR_DEFAULTS

    if config.get("extractor") is not None:
        config["extractor"] = merge(EXTRACTOR_DEFAULTS, config["extractor"], prefix="extractor.")
    detectors = config.get("detectors") or []
    if not isinstance(detectors, list):
        raise ConfigError("config key 'detectors' must be a list of {name, input, conf, ...}")
    seen: set[str] = set()
    for i, entry in enumerate(detectors):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"detectors.{i}: each detector needs a 'name'")
        full = merge(DETECTOR_ENTRY_DEFAULTS, entry, prefix=f"detectors.{i}.")
        full["id"] = full.get("id") or full["name"]
        if full["id"] in seen:
            raise ConfigError(f"detectors.{i}: duplicate detector id {full['id']!r}; set a unique 'id'")
        seen.add(full["id"])
        detectors[i] = full


def fingerprint(obj: Any) -> str:
    """A short stable hash of a (sub)config, for cache keys and stage markers."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dump_config(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
