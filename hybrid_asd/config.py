"""Approach configs: one YAML per approach, nested by stage, with dotted command-line overrides.

A config is typed (:class:`Config`, built from the sections each stage owns in
``hybrid_asd/<stage>/settings.py``) and validated once, when it is loaded: unknown keys, wrong
types, values out of range, component names missing from their registries, ensemble members that
are no detector of the config. Every problem is a :class:`~hybrid_asd.errors.ConfigError` line
naming the dotted key, the bad value and what is allowed; the CLI prints it and exits with 2.

:func:`load_config` reads a YAML file over the defaults, applies ``--set key.path=value``
overrides (values parsed as YAML) and returns the :class:`Config`; :meth:`Config.to_dict` is the
resolved config saved beside the outputs (readable YAML, :func:`dump_config`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from pydantic import Field, ValidationInfo, field_validator

from hybrid_asd.data.settings import DataSettings
from hybrid_asd.detectors.settings import DetectorEntry
from hybrid_asd.ensemble.settings import EnsembleSettings
from hybrid_asd.errors import ConfigError
from hybrid_asd.evaluation.settings import EvaluationSettings
from hybrid_asd.extractor.settings import ExtractorSettings
from hybrid_asd.features.settings import FeatureSettings
from hybrid_asd.settings import InvalidKey, NonNegativeInt, Section

OE_SCORES = "oe"  # the extractor's score table (hybrid_asd.extractor.stage)
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda|cuda:\d+|mps")
DEVICES_HELP = "auto, cpu, cuda, cuda:N or mps"


class Config(Section):
    """The resolved config of one approach: what every stage reads."""

    name: str = "unnamed"
    description: str = ""
    seed: NonNegativeInt = 0
    device: str = Field("auto", pattern=DEVICE_PATTERN.pattern)  # auto | cpu | cuda | cuda:N | mps
    data: DataSettings = Field(default_factory=DataSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    extractor: ExtractorSettings | None = Field(default_factory=ExtractorSettings)  # null: no extractor
    detectors: list[DetectorEntry] = Field(default_factory=list)
    ensemble: EnsembleSettings = Field(default_factory=EnsembleSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, device: Any) -> Any:
        if isinstance(device, str) and not DEVICE_PATTERN.fullmatch(device):
            raise ValueError(f"must be one of {DEVICES_HELP}")
        return device

    @field_validator("extractor")
    @classmethod
    def _extractor_fits_the_data(cls, extractor: ExtractorSettings | None, info: ValidationInfo
                                 ) -> ExtractorSettings | None:
        if extractor is not None and "data" in info.data:
            # Lazy: backbones.py imports torch; only configs with an extractor get here.
            from hybrid_asd.extractor.backbones import check_backbone_data

            check_backbone_data(extractor, info.data["data"])
            if info.data["data"].channel == "all" and extractor.input == "waveform":
                raise InvalidKey("input", extractor.input, "waveform input takes one channel; data.channel: all "
                                                           "needs log-mel input (patches or clip)")
        return extractor

    @field_validator("detectors")
    @classmethod
    def _detectors_fit_the_config(cls, detectors: list[DetectorEntry], info: ValidationInfo) -> list[DetectorEntry]:
        seen: set[str] = set()
        for i, entry in enumerate(detectors):
            if entry.id in seen:
                raise InvalidKey(f"{i}.id", entry.id, "duplicate detector id; give each entry a unique 'id'")
            seen.add(entry.id)
            if entry.input == "embedding" and "extractor" in info.data and info.data["extractor"] is None:
                raise InvalidKey(f"{i}.input", entry.input, "needs an extractor, and this config has "
                                                            "'extractor: null'; use logmel_stats or logmel_frames")
        return detectors

    @field_validator("ensemble")
    @classmethod
    def _members_exist(cls, ensemble: EnsembleSettings, info: ValidationInfo) -> EnsembleSettings:
        if "detectors" not in info.data or "extractor" not in info.data:
            return ensemble  # reported already
        ids = score_table_ids(info.data["detectors"], info.data["extractor"] is not None)
        for i, member in enumerate(ensemble.members or []):
            if member not in ids:
                raise InvalidKey(f"members.{i}", member, f"is no score table of this config; known: {', '.join(ids)}")
        if ensemble.members and len(set(ensemble.members)) != len(ensemble.members):
            raise InvalidKey("members", ensemble.members, "lists a detector twice")
        fused = ensemble.members or ids
        per_machine = any(isinstance(v, Mapping) for v in ensemble.weights.values())
        for key, value in ensemble.weights.items():
            for detector in (value if per_machine else {key: value}):
                if detector not in fused:
                    where = f"weights.{key}.{detector}" if per_machine else f"weights.{key}"
                    raise InvalidKey(where, (value[detector] if per_machine else value),
                                     f"{detector!r} is not fused; fused: {', '.join(fused)}")
        return ensemble

    # --- views -----------------------------------------------------------------------------------
    @property
    def score_tables(self) -> list[str]:
        """Ids of the score tables the stages write: the OE scores (with an extractor), then the detectors."""
        return score_table_ids(self.detectors, self.extractor is not None)

    def sections(self, keys: Iterable[str]) -> dict[str, Any]:
        """The named top-level keys of the resolved config (what a stage's marker fingerprints)."""
        resolved = self.to_dict()
        return {key: resolved[key] for key in keys}


def score_table_ids(detectors: Iterable[DetectorEntry], has_extractor: bool) -> list[str]:
    return ([OE_SCORES] if has_extractor else []) + [entry.id for entry in detectors]


# --- loading ------------------------------------------------------------------------------------
def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; ConfigError naming the file when it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: not a readable YAML text file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults <- YAML file <- ``key.path=value`` overrides, validated once. Errors name the key and
    where its value came from (the file, or ``--set``)."""
    tree = read_yaml_mapping(path) if path is not None else {}
    overridden: list[str] = []
    for text in overrides:
        tree = apply_override(tree, text)
        overridden.append(text.split("=", 1)[0].strip())

    def source(key: str) -> str:
        if any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in overridden):
            return "--set"
        return str(path) if path is not None else ""

    return Config.parse(tree, source=source)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a","b","c"], YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({' '.join(str(exc).split())})") from None
    return key.strip().split("."), value


def apply_override(tree: Mapping[str, Any], text: str) -> dict[str, Any]:
    """A copy of the config ``tree`` (as written, or resolved) with one ``key.path=value`` override.

    Mappings missing on the way are created (a YAML entry need not spell out a key to override it);
    whether the key exists is checked when the result is validated, which names the known keys.
    """
    keys, value = parse_override(text)
    out = copy.deepcopy(dict(tree))
    node: Any = out
    for i, key in enumerate(keys):
        dotted = ".".join(keys[: i + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"override {text!r}: {dotted!r} is not a valid list index")
            key = int(key)  # type: ignore[assignment]
        elif not isinstance(node, dict):
            raise ConfigError(f"override {text!r}: {'.'.join(keys[:i])!r} is not a mapping")
        if i == len(keys) - 1:
            node[key] = value
        else:
            if isinstance(node, dict) and node.get(key) is None:  # absent, or e.g. 'extractor: null'
                node[key] = {}
            node = node[key]
    return out


# --- saving -------------------------------------------------------------------------------------
def fingerprint(obj: Any) -> str:
    """A short stable hash of a (sub)config, for cache keys and stage markers."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dump_config(config: Config | Mapping[str, Any]) -> str:
    """Readable YAML of a resolved config (keys in their defined order)."""
    tree = config.to_dict() if isinstance(config, Config) else dict(config)
    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=False)


def config_schema() -> dict[str, Any]:
    """The JSON Schema of an approach YAML (shipped as ``hybrid_asd/configs/config.schema.json``)."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hybrid_asd approach config"
    return schema


__all__ = [
    "Config", "DEVICES_HELP", "OE_SCORES", "DEVICE_PATTERN", "apply_override", "config_schema", "dump_config",
    "fingerprint", "load_config", "parse_override", "read_yaml_mapping",
]
