"""What scoring new recordings returns and writes: one record per clip (or per window of a recording).

A :class:`ClipScore` holds the fused score, the decision at the system's threshold, the section and
domain used, and each member's raw score, its z-normalised score and the domain model that gave it.
:class:`RecordWriter` writes records as CSV or JSON lines while they come (to ``<out>.partial``,
flushed after every record, so a crash keeps what was scored) and moves the file into place
atomically when it closes (normally, on an error or on Ctrl-C). :func:`read_records` reads either
format back.

CSV columns: ``path,start,end,machine,section,domain,label,score,threshold,decision`` and per member
``<member>_raw``, ``<member>_z``, ``<member>_model`` (``start``/``end`` empty for whole clips). Floats
are written with ``repr``, so reading them back gives the identical number. JSON lines hold the same
fields with the members nested: ``{"members": {"knn": {"raw": .., "z": .., "model": ..}}}``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable

from hybrid_asd.errors import DataError

log = logging.getLogger(__name__)

BASE_COLUMNS = ("path", "start", "end", "machine", "section", "domain", "label", "score", "threshold", "decision")
MEMBER_FIELDS = ("raw", "z", "model")
FORMATS = {".csv": "csv", ".jsonl": "jsonl"}
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class MemberScore:
    """One member's score of a clip: ``raw`` as the detector gives it, ``z`` after the system's
    normalisation (equal to ``raw`` when the ensemble does not normalise) and ``model``, the domain
    model that gave the raw score (``source``, ``target`` or ``pooled``; empty for the OE score,
    which has no domain models)."""

    raw: float
    z: float
    model: str = ""


@dataclass(frozen=True)
class ClipScore:
    """The score of one clip or window. ``domain`` is the domain used (``unknown`` when neither the
    file name nor the caller said: the detectors score against both domain models either way, see
    ``MemberScore.model``); ``label`` is what the file name says (``normal``/``anomaly``) or
    ``unknown``; ``decision`` is 1 (anomalous) when ``score > threshold``."""

    path: str
    machine: str
    section: int
    domain: str
    label: str
    score: float
    threshold: float
    decision: int
    members: dict[str, MemberScore] = field(default_factory=dict)
    start: float | None = None  # seconds into the recording (windowed scoring), else None
    end: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (the JSON-lines form)."""
        out = asdict(self)
        out["members"] = {name: asdict(m) for name, m in self.members.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClipScore":
        members = {name: MemberScore(float(m["raw"]), float(m["z"]), str(m.get("model", "")))
                   for name, m in (data.get("members") or {}).items()}
        return cls(
            path=str(data["path"]), machine=str(data["machine"]), section=int(data["section"]),
            domain=str(data["domain"]), label=str(data["label"]), score=float(data["score"]),
            threshold=float(data["threshold"]), decision=int(data["decision"]), members=members,
            start=_optional_float(data.get("start")), end=_optional_float(data.get("end")),
        )

    def to_row(self) -> dict[str, str]:
        """The flat CSV row (floats as ``repr``)."""
        row = {
            "path": self.path, "start": _text(self.start), "end": _text(self.end), "machine": self.machine,
            "section": f"{self.section:02d}", "domain": self.domain, "label": self.label,
            "score": repr(float(self.score)), "threshold": repr(float(self.threshold)),
            "decision": str(int(self.decision)),
        }
        for name, m in self.members.items():
            row[f"{name}_raw"], row[f"{name}_z"], row[f"{name}_model"] = repr(float(m.raw)), repr(float(m.z)), m.model
        return row

    @classmethod
    def from_row(cls, row: dict[str, str], members: Iterable[str]) -> "ClipScore":
        data: dict[str, Any] = {k: row[k] for k in BASE_COLUMNS}
        data["start"], data["end"] = row["start"] or None, row["end"] or None
        data["members"] = {name: {f: row[f"{name}_{f}"] for f in MEMBER_FIELDS} for name in members}
        return cls.from_dict(data)


def _text(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _optional_float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


class Scores(list):
    """A list of :class:`ClipScore` (what ``System.score`` returns), with the inputs that could not be
    scored in ``errors`` (one line each, naming the file) and :meth:`to_frame` for pandas users."""

    def __init__(self, records: Iterable[ClipScore] = (), errors: Iterable[str] = ()):
        super().__init__(records)
        self.errors: list[str] = list(errors)

    def to_frame(self) -> Any:
        """A pandas DataFrame with the CSV file's columns (needs pandas, which hybrid_asd does not)."""
        try:
            import pandas  # lazy and optional: pandas is not a dependency of hybrid_asd
        except ImportError:
            raise ImportError("Scores.to_frame needs pandas (pip install pandas); the records are dataclasses") from None
        frame = pandas.DataFrame([r.to_row() for r in self])
        numeric = [c for c in frame.columns if c in ("start", "end", "score", "threshold", "section", "decision")
                   or c.endswith(("_raw", "_z"))]
        for column in numeric:
            frame[column] = pandas.to_numeric(frame[column])
        return frame


def output_format(path: str | os.PathLike | None) -> str:
    """``csv`` or ``jsonl`` from the file name (``None``: CSV on standard output)."""
    if path is None:
        return "csv"
    name = Path(path).name
    if name.endswith(PARTIAL_SUFFIX):  # a file still being written reads as what it will become
        name = name[: -len(PARTIAL_SUFFIX)]
    suffix = Path(name).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: the output must end in .csv or .jsonl")
    return FORMATS[suffix]


def columns(members: Iterable[str]) -> list[str]:
    return list(BASE_COLUMNS) + [f"{name}_{f}" for name in members for f in MEMBER_FIELDS]


class RecordWriter:
    """Writes records as they come; see the module docstring.

    ``path=None`` writes CSV to standard output. With ``append``, the records of an existing output
    file are kept (its columns must be this system's) and :attr:`done` lists their keys (path, start),
    so a restarted ``--watch`` skips what it already scored.
    """

    def __init__(self, path: str | os.PathLike | None, members: list[str], *, append: bool = False):
        self.path = None if path is None else Path(path)
        self.format = output_format(path)
        self.members = list(members)
        self.columns = columns(self.members)
        self.count = 0
        self.done: set[tuple[str, float | None]] = set()
        self._handle: IO[str]
        self._csv: Any = None
        if self.path is None:
            self._handle = sys.stdout
            self._partial = None
            self._start_csv(header=True)
            return
        self._partial = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        if self._partial.exists():
            log.warning("%s is left from an interrupted run; starting it afresh", self._partial)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        previous = self._previous_text() if append and self.path.is_file() else ""
        self._handle = open(self._partial, "w", encoding="utf-8", newline="")
        self._handle.write(previous)
        if self.format == "csv":
            self._start_csv(header=not previous)
        self._handle.flush()

    def _previous_text(self) -> str:
        """The existing output, checked to be this system's; its records become :attr:`done`."""
        assert self.path is not None
        text = self.path.read_text(encoding="utf-8")
        for record in read_records(self.path):
            self.done.add((record.path, record.start))
        if self.format == "csv" and text:
            header = next(csv.reader(io.StringIO(text)), [])
            if header != self.columns:
                raise DataError(f"{self.path}: cannot append, its columns are not this system's "
                                f"(expected {','.join(self.columns)}); choose another --out")
        if text and not text.endswith("\n"):
            text += "\n"
        return text

    def _start_csv(self, header: bool) -> None:
        self._csv = csv.DictWriter(self._handle, fieldnames=self.columns, lineterminator="\n")
        if header:
            self._csv.writeheader()

    def write(self, record: ClipScore) -> None:
        if self.format == "csv":
            self._csv.writerow(record.to_row())
        else:
            self._handle.write(json.dumps(record.to_dict()) + "\n")
        self._handle.flush()
        self.done.add((record.path, record.start))
        self.count += 1

    def close(self) -> None:
        """Move the written records into place (atomic rename); safe to call twice."""
        if self._partial is None or self._handle.closed:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        assert self.path is not None
        os.replace(self._partial, self.path)

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_records(path: str | os.PathLike) -> list[ClipScore]:
    """The records of a CSV or JSON-lines output file; errors name the file and line."""
    path = Path(path)
    fmt = output_format(path)
    if not path.is_file():
        raise DataError(f"score file not found: {path}")
    try:
        if fmt == "jsonl":
            records = []
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if line.strip():
                    try:
                        records.append(ClipScore.from_dict(json.loads(line)))
                    except (ValueError, KeyError, TypeError) as exc:
                        raise DataError(f"{path} line {lineno}: not a score record ({exc!r})") from None
            return records
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in BASE_COLUMNS if c not in header]
            if missing:
                raise DataError(f"{path}: not a predict output (missing column(s) {missing})")
            members = [c[: -len("_raw")] for c in header if c.endswith("_raw")]
            out = []
            for lineno, row in enumerate(reader, start=2):
                try:
                    out.append(ClipScore.from_row(row, members))
                except (ValueError, KeyError, TypeError) as exc:
                    raise DataError(f"{path} line {lineno}: not a score record ({exc!r})") from None
            return out
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file ({exc})") from None
