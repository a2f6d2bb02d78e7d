"""The `Clip` record: everything a DCASE file name says about one audio clip."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from hybrid_asd.utils import atomic_path

DOMAINS = ("source", "target")
# MIMII (2019) keeps normal and abnormal clips of one id in two folders with the same file names
# (id_00/normal/00000000.wav, id_00/abnormal/00000000.wav); see :func:`official_name`.
MIMII_LABEL_NAMES = {"normal": "normal", "abnormal": "anomaly"}
_MIMII_ID_FOLDER = re.compile(r"^id_(\d+)$")
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
        """The clip's name in official files (score/decision files, ground truth): unique within its
        machine type and section (see :func:`official_name`)."""
        return official_name(self.path)

    def with_label(self, label: str) -> "Clip":
        return replace(self, label=label)


def official_name(path: str | Path) -> str:
    """The name of a clip in official files: its file name, except in the MIMII layout.

    MIMII's ``<machine>/id_00/normal/00000000.wav`` and ``.../abnormal/00000000.wav`` share a file
    name, so they are named as the DCASE 2020 Task 2 data named the same recordings:
    ``normal_id_00_00000000.wav`` and ``anomaly_id_00_00000000.wav``.
    """
    path = Path(path)
    folder = MIMII_LABEL_NAMES.get(path.parent.name)
    match = _MIMII_ID_FOLDER.match(path.parent.parent.name)
    if folder is not None and match is not None:
        return f"{folder}_id_{match[1]}_{path.name}"
    return path.name


def clip_relpath(path: str | Path) -> str:
    """A clip's path relative to its data root, ``<machine>/<split folder>/<file>`` (MIMII:
    ``<machine>/id_<nn>/<normal|abnormal>/<file>``), with "/" separators.

    What identifies a clip across machines and data-root locations: checkpoints store their
    validation clips (and fingerprint their training clips) this way, so a checkpoint trained
    elsewhere still finds its validation clips in a table of local absolute paths."""
    parts = Path(path).parts
    keep = 4 if official_name(path) != Path(path).name else 3
    return "/".join(parts[-keep:])


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
