"""Unpacking downloaded archives into the layout the recipes read (``<machine>/<split>/``)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from hybrid_asd.errors import DataError
from hybrid_asd.utils import atomic_path

MARKER_SUFFIX = ".unpacked.json"
SPLIT_DIRS = frozenset({"train", "test", "source_test", "target_test", "supplemental"})
COPY_BUFFER = 1 << 18  # bytes per copy from the zip


def member_destination(member: str, machine: str | None, flatten_csv: bool, archive: Path) -> PurePosixPath | None:
    """Where a zip member goes, relative to the record's target folder (None: skip it).

    Machine archives land in ``<machine>/<split>/...`` whatever folder prefix the zip uses.
    """
    path = PurePosixPath(member.replace("\\", "/"))
    parts = path.parts
    if path.is_absolute() or ".." in parts or not parts:
        raise DataError(f"{archive}: unsafe member path {member!r}")
    if parts[0] == "__MACOSX" or path.name.startswith("._") or path.name == ".DS_Store":
        return None
    if flatten_csv:
        return PurePosixPath(path.name) if path.suffix.lower() == ".csv" else None
    if machine is None:
        return path
    if machine in parts[:-1]:
        return PurePosixPath(*parts[parts.index(machine):])
    for i, part in enumerate(parts[:-1]):
        if part in SPLIT_DIRS:
            return PurePosixPath(machine, *parts[i:])
    return PurePosixPath(machine, *parts)


def unpack(archive: Path, target: Path, machine: str | None = None, flatten_csv: bool = False) -> int:
    """Unpack ``archive`` (a zip, or a lone CSV) into ``target``; return the number of files written.

    Hand-written over :class:`zipfile.ZipFile` because pooch's ``Unzip`` keeps the zip's own
    folders, and the recipes need ``<machine>/<split>/`` whatever prefix an archive uses. Each
    file is written atomically; a crash mid-way leaves no marker, so the next run unpacks again.
    """
    target.mkdir(parents=True, exist_ok=True)
    if archive.suffix.lower() == ".csv":
        shutil.copyfile(archive, target / archive.name)
        return 1
    written = 0
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                rel = member_destination(info.filename, machine, flatten_csv, archive)
                if rel is None:
                    continue
                dest = target.joinpath(*rel.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, atomic_path(dest) as tmp, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, COPY_BUFFER)
                written += 1
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive}: not a valid zip archive ({exc})") from exc
    if written == 0:
        raise DataError(f"{archive}: no files to unpack")
    return written


def marker_done(marker: Path, md5: str | None) -> bool:
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return md5 is None or info.get("md5") == md5


