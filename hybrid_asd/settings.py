"""Building blocks of the typed config: the section base class, value types and error messages.

Every config section is a frozen pydantic model defined next to the stage that reads it
(``hybrid_asd/<stage>/settings.py``); :mod:`hybrid_asd.config` composes them into one
:class:`~hybrid_asd.config.Config`. A section is validated once, when a config is loaded: types,
ranges and component names (against the registries). Stage code then reads typed attributes and
never restates a default.

Validation errors become one :class:`~hybrid_asd.errors.ConfigError` whose lines each name the
dotted key, the bad value and what is allowed (:func:`validation_error`).
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Callable, Mapping, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError

from hybrid_asd.errors import ConfigError


def _reject_bool(value: Any) -> Any:
    # YAML's `yes`/`true` must not pass as 1 or 1.0 in a numeric field.
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


# Integers are strict (no "5", 5.0 or true); floats accept ints and numeric strings such as
# "1e-3", which PyYAML reads as a string (YAML 1.1 wants a dot), but not booleans.
Int = Annotated[int, Strict()]
Float = Annotated[float, BeforeValidator(_reject_bool)]
Bool = Annotated[bool, Strict()]
PositiveInt = Annotated[int, Strict(), Field(gt=0)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
PositiveFloat = Annotated[float, BeforeValidator(_reject_bool), Field(gt=0)]
NonNegativeFloat = Annotated[float, BeforeValidator(_reject_bool), Field(ge=0)]
Fraction = Annotated[float, BeforeValidator(_reject_bool), Field(ge=0, le=1)]

S = TypeVar("S", bound="Section")
# Where a value came from, for error lines: a label, or a function of the value's dotted key.
Source = Union[str, Callable[[str], str]]


class InvalidKey(ConfigError):
    """A bad value of ``key`` (dotted, relative to the model being validated). Raised inside a
    validator, it blames that key rather than the whole model or field it was raised from."""

    def __init__(self, key: str, value: Any, message: str):
        super().__init__(f"{key} = {_show(value)}: {message}")
        self.key, self.value, self.message = key, value, message


class Section(BaseModel):
    """A config section: unknown keys are errors, values are validated on construction and the
    object is immutable afterwards."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @classmethod
    def parse(cls: type[S], data: S | Mapping[str, Any] | None, *, where: str = "", source: Source = "") -> S:
        """``data`` as this section: an instance passes through; a mapping (missing keys take their
        defaults) is validated. Errors name keys under ``where`` (e.g. ``"extractor"``), each line
        starting with ``source`` (e.g. the YAML file; or a function of the dotted key) when given."""
        if isinstance(data, cls):
            return data
        if data is not None and not isinstance(data, Mapping):
            origin = _source_of(source, where)
            raise ConfigError(f"{origin + ': ' if origin else ''}{where or 'config'} must be a mapping of keys "
                              f"to values, got {_show(data)}")
        try:
            return cls.model_validate(dict(data or {}))
        except ValidationError as exc:
            raise validation_error(exc, cls, prefix=where, source=source) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-able values (paths as strings), in field order."""
        return self.model_dump(mode="json")


class Component(Section):
    """A component chosen by registry name, with the keyword arguments it is built with."""

    name: str
    conf: dict[str, Any] = Field(default_factory=dict)


# --- error messages ------------------------------------------------------------------------------
def validation_error(
    exc: ValidationError, model: type[BaseModel], *, prefix: str = "", source: Source = ""
) -> ConfigError:
    """One ConfigError with a line per problem: ``<source>: <dotted key> = <value>: <what is wrong>``."""
    lines = [_error_line(err, model, prefix, source) for err in exc.errors()]
    return ConfigError("\n".join(dict.fromkeys(lines)))  # unique, in order


def _error_line(err: Mapping[str, Any], model: type[BaseModel], prefix: str, source: Source) -> str:
    loc = [str(p) for p in err["loc"]]
    blamed = (err.get("ctx") or {}).get("error")
    if isinstance(blamed, InvalidKey):
        loc += blamed.key.split(".")
        err = {**err, "input": blamed.value, "msg": blamed.message, "type": "invalid_key"}
    key = ".".join([prefix] + loc if prefix else loc) or "<config>"
    origin = _source_of(source, key)
    where = f"{origin}: " if origin else ""
    if err["type"] == "extra_forbidden":
        known = known_keys(model, err["loc"][:-1])
        hint = f"; known keys here: {', '.join(known)}" if known else ""
        return f"{where}config key {key!r} does not exist{hint}"
    return f"{where}{key} = {_show(err.get('input'))}: {_message(err)}"


def _source_of(source: Source, key: str) -> str:
    return source(key) if callable(source) else source


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: Mapping[str, Any]) -> str:
    kind, msg = err["type"], str(err["msg"])
    if kind == "invalid_key":
        return msg
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a mapping of keys to values"
    if kind == "missing":
        return "is required"
    return msg.replace("Input should be", "must be")


def known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub)model that ``loc`` points into, or [] when it is not a model."""
    current: Any = model
    for part in loc:
        current = _without_none(current)
        if isinstance(part, int):
            current = typing.get_args(current)[0] if typing.get_origin(current) is list else None
        elif _is_model(current) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return []
    current = _without_none(current)
    return list(current.model_fields) if _is_model(current) else []


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _without_none(annotation: Any) -> Any:
    """``X`` of ``X | None``; other annotations unchanged."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


__all__ = [
    "Bool", "Component", "Float", "Fraction", "Int", "InvalidKey", "NonNegativeFloat", "NonNegativeInt",
    "PositiveFloat", "PositiveInt", "Section", "Source", "known_keys", "validation_error",
]
