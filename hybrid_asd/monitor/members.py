"""Names of the members a system fuses, and how a weights file's names map onto them.

One experiment: a member is named by its score table id (``oe``, ``knn``), as in the experiment's own
``ensemble`` section. Several experiments: by ``<experiment>/<id>`` (e.g. ``demo_hybrid/oe``), where
``<experiment>`` is the experiment's config ``name`` (made unique by the folder name when two share
it). A name in a weights file (``ensemble.members``, ``ensemble.weights``) may be qualified or plain;
a plain one must match exactly one member. These helpers are the only place that knows the form, so
it can follow the ensemble's own qualified names (issue #14) by editing this module alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from hybrid_asd.errors import ConfigError

SEPARATOR = "/"


@dataclass(frozen=True)
class Candidate:
    """A score table a system may fuse: its experiment's label and the table id."""

    label: str
    table_id: str

    def qualified(self) -> str:
        return f"{self.label}{SEPARATOR}{self.table_id}"


def member_name(candidate: Candidate, qualified: bool) -> str:
    """The member's name in a system of one experiment (plain) or several (qualified)."""
    return candidate.qualified() if qualified else candidate.table_id


def unique_labels(names: Sequence[str], folders: Sequence[str]) -> list[str]:
    """Experiment labels: the config names, with ``-<folder>`` added where two would be equal."""
    out = []
    for name, folder in zip(names, folders):
        out.append(f"{name}-{folder}" if list(names).count(name) > 1 else name)
    if len(set(out)) != len(out):
        raise ConfigError(f"experiments {list(zip(names, folders))} cannot be told apart; give distinct folders")
    return out


def resolve(name: str, candidates: Iterable[Candidate], where: str) -> Candidate:
    """The candidate that ``name`` (qualified or plain) denotes; ConfigError naming ``where`` otherwise."""
    candidates = list(candidates)
    exact = [c for c in candidates if c.qualified() == name]
    if exact:
        return exact[0]
    plain = [c for c in candidates if c.table_id == name]
    if len(plain) == 1:
        return plain[0]
    known = ", ".join(c.qualified() for c in candidates)
    if plain:
        raise ConfigError(f"{where}: {name!r} is ambiguous; qualify it as one of "
                          f"{', '.join(c.qualified() for c in plain)}")
    raise ConfigError(f"{where}: no score table {name!r}; the experiments have: {known}")


def rename_weights(weights: Mapping[str, Any], candidates: Sequence[Candidate], qualified: bool,
                   where: str) -> dict[str, Any]:
    """``{name: w}`` or ``{machine: {name: w}}`` with every name replaced by its member name."""

    def rename(shared: Mapping[str, Any], at: str) -> dict[str, float]:
        return {member_name(resolve(k, candidates, at), qualified): float(v) for k, v in shared.items()}

    if weights and all(isinstance(v, Mapping) for v in weights.values()):
        return {machine: rename(ws, f"{where}.{machine}") for machine, ws in weights.items()}
    return rename(weights, where)
