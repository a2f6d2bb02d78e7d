"""The `Clip` record: everything a DCASE file name says about one audio clip."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

from hybrid_asd.utils import atomic_path

DOMAINS = ("source", "target")
SPLITS = ("train", "test", "supplemental")  # supplemental: DCASE 2025+ supplemental recordings
LABELS = ("normal", "anomaly", "unknown")


@dataclass(frozen=True)
class Clip:
    """One audio clip, as parsed from its official file name.

    ``section`` is an int (``section_03`` -> 3; DCASE 2020 ``id_04`` -> 4).
    ``attributes`` holds key/value pairs where the name allows (``car_C2_spd_34V``),
    ``attributes_raw`` the raw tail of the name in every case. ``kind`` is set for supplemental
    clips only (split "supplemental"): what the recording holds, as its name says (``machine``:
    clean machine sound; e.g. ``noise``: background noise only).
    """

    path: Path
    machine: str
    section: int
    domain: str
    split: str
    label: str
    index: int = -1
    attributes: tuple[tuple[str, str], ...] = field(default=())
    attributes_raw: str = ""
    scheme: str = ""
    kind: str = ""

    @property
    def section_name(self) -> str:
        return f"section_{self.section:02d}"

    @property
    def is_anomaly(self) -> bool:
        return self.label == "anomaly"

    @property
    def attribute_dict(self) -> dict[str, str]:
        return dict(self.attributes)

    @property
    def name(self) -> str:
        return Path(self.path).name

    def with_label(self, label: str) -> "Clip":
        return replace(self, label=label)


# --- tabular form (manifests, score tables) ---------------------------------------------
CLIP_COLUMNS = ("path", "machine", "section", "domain", "split", "label", "index", "attributes", "scheme", "kind")


def format_attributes(attributes: tuple[tuple[str, str], ...], raw: str) -> str:
    """``k=v;k=v`` when parsed into pairs, else the raw string."""
    if attributes:
        return ";".join(f"{k}={v}" for k, v in attributes)
    return raw


def parse_attribute_field(text: str) -> tuple[tuple[tuple[str, str], ...], str]:
    if text and "=" in text:
        pairs = tuple(tuple(p.split("=", 1)) for p in text.split(";") if p)
        return pairs, "_".join(f"{k}_{v}" for k, v in pairs)  # type: ignore[misc]
    return (), text


def clip_to_row(clip: Clip) -> dict[str, str]:
    return {
        "path": str(clip.path),
        "machine": clip.machine,
        "section": f"{clip.section:02d}",
        "domain": clip.domain,
        "split": clip.split,
        "label": clip.label,
        "index": str(clip.index),
        "attributes": format_attributes(clip.attributes, clip.attributes_raw),
        "scheme": clip.scheme,
        "kind": clip.kind,
    }


def clip_from_row(row: dict[str, str]) -> Clip:
    attributes, raw = parse_attribute_field(row.get("attributes", ""))
    return Clip(
        path=Path(row["path"]),
        machine=row["machine"],
        section=int(row["section"]),
        domain=row["domain"],
        split=row["split"],
        label=row["label"],
        index=int(row.get("index") or -1),
        attributes=attributes,
        attributes_raw=raw,
        scheme=row.get("scheme", ""),
        kind=row.get("kind") or "",
    )


def write_clip_list(path, clips) -> None:
    """Write clips as CSV (atomically)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CLIP_COLUMNS)
        writer.writeheader()
        for clip in clips:
            writer.writerow(clip_to_row(clip))


def read_clip_list(path) -> list[Clip]:
    with open(path, newline="") as fh:
        return [clip_from_row(row) for row in csv.DictReader(fh)]
