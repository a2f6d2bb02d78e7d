"""Official DCASE submission files: anomaly scores and decision results.

One file per (machine, section, domain), named as the DCASE 2021 evaluator expects:
``anomaly_score_<machine>_section_<nn>_<domain>_test.csv`` with rows ``<clip file name>,<score>``
and ``decision_result_<machine>_section_<nn>_<domain>_test.csv`` with rows ``<clip file name>,<0|1>``
(1 = anomalous); no header. Scores are written with ``repr`` so that reading them back gives the
identical float.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Mapping

from hybrid_asd.errors import ScoreError
from hybrid_asd.evaluation.thresholds import section_thresholds, write_thresholds
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_write_text

log = logging.getLogger(__name__)

Key = tuple[str, int, str]  # (machine, section, domain)
Thresholds = Mapping[Key, float] | float | None

_NAME_TAIL = r"_(?P<machine>.+)_section_(?P<section>\d+)_(?P<domain>source|target)_test\.csv$"
SCORE_FILE_RE = re.compile(r"^anomaly_score" + _NAME_TAIL)
DECISION_FILE_RE = re.compile(r"^decision_result" + _NAME_TAIL)


def score_file_name(machine: str, section: int, domain: str) -> str:
    return f"anomaly_score_{machine}_section_{section:02d}_{domain}_test.csv"


def decision_file_name(machine: str, section: int, domain: str) -> str:
    return f"decision_result_{machine}_section_{section:02d}_{domain}_test.csv"


@dataclass
class Submission:
    """The score and decision files of a folder, keyed by (machine, section, domain).

    ``scores[key]`` and ``decisions[key]`` map clip file names to values in file order;
    ``score_files`` / ``decision_files`` give the file each key was read from (for messages).
    """

    scores: dict[Key, dict[str, float]] = field(default_factory=dict)
    decisions: dict[Key, dict[str, int]] = field(default_factory=dict)
    score_files: dict[Key, Path] = field(default_factory=dict)
    decision_files: dict[Key, Path] = field(default_factory=dict)

    def merge(self, other: "Submission") -> "Submission":
        """Both submissions together; a key present in both is an error naming both files."""
        out = Submission(dict(self.scores), dict(self.decisions), dict(self.score_files), dict(self.decision_files))
        for kind, files, values in (("score", other.score_files, other.scores),
                                    ("decision", other.decision_files, other.decisions)):
            mine = out.score_files if kind == "score" else out.decision_files
            target = out.scores if kind == "score" else out.decisions
            for key, path in files.items():
                if key in mine:
                    raise ScoreError(f"{kind} file for {key} found twice: {mine[key]} and {path}")
                mine[key] = path
                target[key] = values[key]  # type: ignore[assignment]
        return out


# --- writing -------------------------------------------------------------------------------
def _threshold_for(thresholds: Thresholds, key: Key) -> float:
    if isinstance(thresholds, Mapping):
        if key not in thresholds:
            raise ScoreError(f"no decision threshold for {key}; thresholds cover {sorted(thresholds)[:6]}")
        return float(thresholds[key])
    return float(thresholds)  # type: ignore[arg-type]


def _csv_text(rows: list[tuple[str, str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def write_submission(table: ScoreTable, out_dir: str | Path, thresholds: Thresholds = None) -> list[Path]:
    """Write the official score files (and decision files when ``thresholds`` is given) for the
    test rows of ``table``; return the paths written (each file written atomically).

    ``thresholds``: one float for every section, or {(machine, section, domain): threshold}
    (see ``thresholds.section_thresholds``); a clip is anomalous (1) when score > threshold.
    """
    out_dir = Path(out_dir)
    test = table.select(split="test")
    test.check_finite(f"test rows of detector {table.detector!r}")
    if not len(test):
        raise ScoreError(f"detector {table.detector!r}: no test rows to write")
    groups: dict[Key, list[tuple[str, float]]] = {}
    for clip, score in zip(test.clips, test.scores):
        groups.setdefault((clip.machine, clip.section, clip.domain), []).append((clip.name, float(score)))
    written: list[Path] = []
    for key in sorted(groups):
        rows = groups[key]
        names = [n for n, _ in rows]
        if len(set(names)) != len(names):
            dupe = next(n for n in names if names.count(n) > 1)
            raise ScoreError(f"detector {table.detector!r} {key}: clip name {dupe} occurs twice")
        path = out_dir / score_file_name(*key)
        atomic_write_text(path, _csv_text([(n, repr(s)) for n, s in rows]))
        written.append(path)
        if thresholds is not None:
            threshold = _threshold_for(thresholds, key)
            path = out_dir / decision_file_name(*key)
            atomic_write_text(path, _csv_text([(n, "1" if s > threshold else "0") for n, s in rows]))
            written.append(path)
    log.info("wrote %d submission file(s) to %s", len(written), out_dir)
    return written


# --- reading -------------------------------------------------------------------------------
def write_submission_of(table: ScoreTable, out_dir: str | Path, threshold_quantile: float, *,
                        reference: Collection[str] | None = None, thresholds_path: str | Path | None = None
                        ) -> list[Path]:
    """Official files of ``table`` with decisions at the gamma thresholds (``threshold_quantile``)
    of its out-of-sample normal train rows (``reference``: see
    :func:`~hybrid_asd.evaluation.thresholds.section_thresholds`); the thresholds are also written to
    ``thresholds_path`` when given (the evaluation and the report read them from there)."""
    thresholds = section_thresholds(table, threshold_quantile, reference=reference)
    written = write_submission(table, out_dir, thresholds)
    if thresholds_path is not None:
        write_thresholds(thresholds_path, thresholds)
    return written


def _read_rows(path: Path) -> list[tuple[int, str, str]]:
    """(row number, clip name, value) for each non-blank row; errors name the file and row."""
    out = []
    seen: dict[str, int] = {}
    try:
        with open(path, newline="") as fh:
            for rowno, row in enumerate(csv.reader(fh), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != 2:
                    raise ScoreError(f"{path} row {rowno}: expected '<file name>,<value>', got {row!r}")
                name, value = row[0].strip(), row[1].strip()
                if not name:
                    raise ScoreError(f"{path} row {rowno}: empty file name")
                if name in seen:
                    raise ScoreError(f"{path} row {rowno}: {name} already listed in row {seen[name]}")
                seen[name] = rowno
                out.append((rowno, name, value))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ScoreError(f"{path}: not a readable CSV file ({exc})") from None
    if not out:
        raise ScoreError(f"{path}: file holds no rows")
    return out


def read_score_file(path: str | Path) -> dict[str, float]:
    """{clip file name: score} of one anomaly-score file (file order)."""
    path = Path(path)
    scores: dict[str, float] = {}
    for rowno, name, text in _read_rows(path):
        try:
            value = float(text)
        except ValueError:
            raise ScoreError(f"{path} row {rowno}: score {text!r} of {name} is not a number") from None
        if not math.isfinite(value):
            raise ScoreError(f"{path} row {rowno}: score of {name} is {value}")
        scores[name] = value
    return scores


def read_decision_file(path: str | Path) -> dict[str, int]:
    """{clip file name: 0|1} of one decision-result file (file order)."""
    path = Path(path)
    decisions: dict[str, int] = {}
    for rowno, name, text in _read_rows(path):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if value not in (0.0, 1.0):
            raise ScoreError(f"{path} row {rowno}: decision {text!r} of {name} is not 0 or 1")
        decisions[name] = int(value)
    return decisions


def read_submission_dir(folder: str | Path) -> Submission:
    """Read every ``anomaly_score_*.csv`` and ``decision_result_*.csv`` of a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ScoreError(f"score folder not found: {folder}")
    sub = Submission()
    for path in sorted(folder.iterdir()):
        if path.name.startswith("anomaly_score_"):
            pattern, kind, prefix = SCORE_FILE_RE, "score", "anomaly_score"
        elif path.name.startswith("decision_result_"):
            pattern, kind, prefix = DECISION_FILE_RE, "decision", "decision_result"
        else:
            continue
        match = pattern.match(path.name)
        if match is None:
            raise ScoreError(
                f"{path}: not an official file name ({prefix}_<machine>_section_<nn>_<source|target>_test.csv)"
            )
        key = (match["machine"], int(match["section"]), match["domain"])
        if kind == "score":
            sub.scores[key] = read_score_file(path)
            sub.score_files[key] = path
        else:
            sub.decisions[key] = read_decision_file(path)
            sub.decision_files[key] = path
    if not sub.scores:
        raise ScoreError(f"{folder}: no anomaly_score_<machine>_section_<nn>_<domain>_test.csv files")
    return sub
