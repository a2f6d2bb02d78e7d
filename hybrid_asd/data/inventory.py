"""What a data root holds, per machine type: sections, domains, attributes, supplemental clips and
channel counts (the second half of ``hybrid-asd manifest``; the first is ``Manifest.summary``).

Channel counts come from the WAV headers (``soundfile.info``, a few hundred bytes per file), so
listing them reads every header once; unreadable files are counted as such, not raised.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from hybrid_asd.data.audio import audio_info
from hybrid_asd.data.channels import describe_channel
from hybrid_asd.data.clips import Clip
from hybrid_asd.data.names import SUPPLEMENTAL
from hybrid_asd.errors import DataError

__all__ = ["MachineInventory", "channel_counts", "inventory", "format_inventory"]

_MAX_VALUES = 8  # attribute values listed per key


@dataclass
class MachineInventory:
    """One machine type's clips, summarised."""

    machine: str
    sections: list[int]
    domains: list[str]
    attributes: dict[str, list[str]]  # key -> sorted values (training and test clips)
    supplemental: dict[str, int]  # kind -> number of supplemental clips
    channels: dict[int, int] = field(default_factory=dict)  # channel count -> files; 0 = unreadable header


def channel_counts(paths: Iterable[str | Path]) -> dict[int, int]:
    """How many files have 1, 2, ... channels (read from their headers); key 0 counts unreadable files."""
    tally: Counter[int] = Counter()
    for path in paths:
        try:
            tally[audio_info(path)["channels"]] += 1
        except DataError:
            tally[0] += 1
    return dict(sorted(tally.items()))


def inventory(clips: Iterable[Clip], channels: bool = True) -> list[MachineInventory]:
    """One :class:`MachineInventory` per machine type (sorted); ``channels=False`` skips the headers."""
    by_machine: dict[str, list[Clip]] = {}
    for clip in clips:
        by_machine.setdefault(clip.machine, []).append(clip)
    out = []
    for machine in sorted(by_machine):
        group = by_machine[machine]
        regular = [c for c in group if c.split != SUPPLEMENTAL]
        values: dict[str, set[str]] = {}
        for clip in regular:
            for key, value in clip.attributes:
                values.setdefault(key, set()).add(value)
        out.append(MachineInventory(
            machine=machine,
            sections=sorted({c.section for c in group}),
            domains=sorted({c.domain for c in regular}),
            attributes={k: sorted(v, key=_natural) for k, v in values.items()},
            supplemental=dict(sorted(Counter(c.kind for c in group if c.split == SUPPLEMENTAL).items())),
            channels=channel_counts(c.path for c in group) if channels else {},
        ))
    return out


def format_inventory(items: list[MachineInventory], channel: int | str = 0) -> str:
    """Readable lines per machine type; ``channel`` is the ``data.channel`` setting, named where a
    machine type has multi-channel files."""
    lines = []
    for item in items:
        lines.append(f"{item.machine}: sections {', '.join(f'{s:02d}' for s in item.sections)}; "
                     f"domains {', '.join(item.domains) or '-'}")
        if item.attributes:
            attrs = "; ".join(f"{k} = {_values(v)}" for k, v in item.attributes.items())
            lines.append(f"  attributes: {attrs}")
        if item.supplemental:
            kinds = ", ".join(f"{n} {kind}" for kind, n in item.supplemental.items())
            lines.append(f"  supplemental clips: {kinds}")
        if item.channels:
            counts = ", ".join(f"{n} file(s) " + ("unreadable" if ch == 0 else f"with {ch} channel(s)")
                               for ch, n in item.channels.items())
            lines.append(f"  channels: {counts}")
            if any(ch > 1 for ch in item.channels):
                lines.append(f"  multi-channel input: {describe_channel(channel)}")
    return "\n".join(lines)


def _values(values: list[str]) -> str:
    shown = ", ".join(values[:_MAX_VALUES])
    return shown + (f", ... ({len(values)} values)" if len(values) > _MAX_VALUES else "")


def _natural(text: str) -> tuple:
    """Sort key: numbers by value (spd 2 before 10), text alphabetically."""
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)
