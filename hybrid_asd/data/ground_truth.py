"""Official ground-truth CSVs of unlabelled evaluation sets.

Files ``ground_truth_<machine>_section_<nn>_<domain>_test.csv`` hold, without a header, one row
``section_03_source_test_0000.wav,<0 normal | 1 anomaly>`` per test clip.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from hybrid_asd.errors import DataError

GROUND_TRUTH_RE = re.compile(r"^ground_truth_(?P<machine>.+)_section_(?P<section>\d+)_(?P<domain>source|target)_test\.csv$")

GroundTruthKey = tuple[str, int, str]  # (machine, section, domain)


def read_ground_truth_file(path: str | Path) -> dict[str, int]:
    """``{file name: 0|1}`` for one ground-truth CSV; errors name the file and row."""
    path = Path(path)
    labels: dict[str, int] = {}
    with open(path, newline="") as fh:
        for rowno, row in enumerate(csv.reader(fh), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2 or row[1].strip() not in ("0", "1"):
                raise DataError(f"{path} row {rowno}: expected '<file>,<0|1>', got {row!r}")
            name = row[0].strip()
            if name in labels:
                raise DataError(f"{path} row {rowno}: {name} listed twice")
            labels[name] = int(row[1])
    if not labels:
        raise DataError(f"{path}: ground-truth file is empty")
    return labels


def read_ground_truth_dir(folder: str | Path) -> dict[GroundTruthKey, dict[str, int]]:
    """All ground-truth files of a folder, keyed by (machine, section, domain)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"ground-truth folder not found: {folder}")
    out: dict[GroundTruthKey, dict[str, int]] = {}
    for path in sorted(folder.glob("ground_truth_*.csv")):
        match = GROUND_TRUTH_RE.match(path.name)
        if match is None:
            raise DataError(f"{path}: not an official ground-truth file name")
        key = (match["machine"], int(match["section"]), match["domain"])
        out[key] = read_ground_truth_file(path)
    if not out:
        raise DataError(f"{folder}: no ground_truth_<machine>_section_<nn>_<domain>_test.csv files")
    return out
