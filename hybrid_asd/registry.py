"""Explicit registries: components are chosen by name in configs (``name:`` + ``conf:``)."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Generic, TypeVar

from hybrid_asd.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> class (or factory) table with clear errors for unknown names and keys."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def build(self, name: str, conf: dict[str, Any] | None = None, *, where: str = "", **extra: Any) -> T:
        """Instantiate ``name`` with ``conf``; unknown keys raise a ConfigError naming them."""
        factory = self.get(name)
        conf = dict(conf or {})
        check_kwargs(factory, conf, where=where or f"{self.kind} {name!r} conf")
        return factory(**conf, **extra)


def check_kwargs(factory: Callable[..., Any], conf: dict[str, Any], *, where: str) -> None:
    """Raise ConfigError if ``conf`` has keys that ``factory`` does not accept."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(conf) - set(params))
    if unknown:
        allowed = sorted(k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL)
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {allowed}")
