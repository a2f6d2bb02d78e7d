"""Score tables: one row per clip for one detector. Higher score = more anomalous.

The file is a CSV with columns ``path,machine,section,domain,split,label,score``. Rows with
``split=train`` hold out-of-fold scores of normal training clips (used for z-normalisation and
decision thresholds); rows with ``split=test`` the scores of test clips.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from hybrid_asd.data.clips import Clip
from hybrid_asd.errors import ScoreError
from hybrid_asd.utils import atomic_path

log = logging.getLogger(__name__)

SCORE_COLUMNS = ("path", "machine", "section", "domain", "split", "label", "score")


@dataclass
class ScoreTable:
    detector: str
    clips: list[Clip]
    scores: np.ndarray
    source: str = ""  # file the table was read from (for error messages); "" when built in memory

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(self.clips) != len(self.scores):
            raise ScoreError(
                f"detector {self.detector!r}: {len(self.clips)} clips but {len(self.scores)} scores"
            )

    def __len__(self) -> int:
        return len(self.clips)

    def check_finite(self, source: str = "") -> None:
        bad = np.flatnonzero(~np.isfinite(self.scores))
        source = source or self.source
        if bad.size:
            where = f" in {source}" if source else ""
            clip = self.clips[bad[0]]
            raise ScoreError(
                f"detector {self.detector!r}{where}: {bad.size} non-finite score(s), first at row "
                f"{bad[0] + 2} ({clip.path})"
            )

    def select(self, **criteria: object) -> "ScoreTable":
        """Rows whose clip attributes equal the given values, e.g. ``select(split="test")``."""
        keep = [i for i, c in enumerate(self.clips) if all(getattr(c, k) == v for k, v in criteria.items())]
        return ScoreTable(self.detector, [self.clips[i] for i in keep], self.scores[keep], self.source)

    def keys(self) -> list[str]:
        """Clip identities used to align tables of different detectors."""
        return [str(c.path) for c in self.clips]

    def to_csv(self, path: str | Path) -> None:
        self.check_finite(str(path))
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(SCORE_COLUMNS)
            for clip, score in zip(self.clips, self.scores):
                writer.writerow(
                    [str(clip.path), clip.machine, f"{clip.section:02d}", clip.domain, clip.split,
                     clip.label, repr(float(score))]
                )

    @classmethod
    def from_csv(cls, path: str | Path, detector: str | None = None) -> "ScoreTable":
        path = Path(path)
        if not path.is_file():
            raise ScoreError(f"score table not found: {path}")
        detector = detector or path.stem
        clips: list[Clip] = []
        scores: list[float] = []
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = set(SCORE_COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise ScoreError(f"{path}: missing column(s) {sorted(missing)}")
            for rowno, row in enumerate(reader, start=2):
                try:
                    value = float(row["score"])
                except (TypeError, ValueError):
                    raise ScoreError(f"{path} row {rowno}: score {row['score']!r} is not a number") from None
                if not math.isfinite(value):
                    raise ScoreError(f"{path} row {rowno}: score is {value} (detector {detector!r})")
                clips.append(
                    Clip(Path(row["path"]), row["machine"], int(row["section"]), row["domain"],
                         row["split"], row["label"])
                )
                scores.append(value)
        return cls(detector, clips, np.asarray(scores), str(path))

    @classmethod
    def concat(cls, tables: Iterable["ScoreTable"], detector: str | None = None) -> "ScoreTable":
        tables = list(tables)
        if not tables:
            raise ScoreError("no score tables to concatenate")
        sources = list(dict.fromkeys(t.source for t in tables if t.source))
        return cls(
            detector or tables[0].detector,
            [c for t in tables for c in t.clips],
            np.concatenate([t.scores for t in tables]),
            ", ".join(sources),
        )


def held_out_rows(train: ScoreTable, reference: Iterable[str] | None, *, min_rows: int, purpose: str,
                  need_spread: bool = False) -> ScoreTable:
    """Per (machine, section): the rows of ``train`` whose clip paths are in ``reference`` (held-out,
    out-of-sample scores), or all its rows (with a warning) where fewer than ``min_rows`` are, or, with
    ``need_spread``, where the held-out rows all score the same while other rows exist (a kNN gives two clips
    that are each other's nearest neighbour one distance: no spread to standardise with).

    ``reference`` None keeps every row (the rows are out-of-sample already, e.g. cross-fitted).
    ``purpose`` names the use in the warning ("z-normalising", "decision thresholds")."""
    if reference is None:
        return train
    reference = set(map(str, reference))
    held = np.array([str(c.path) in reference for c in train.clips], dtype=bool)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, clip in enumerate(train.clips):
        groups.setdefault((clip.machine, clip.section), []).append(i)
    keep = np.zeros(len(train), dtype=bool)
    for (machine, section), idx in groups.items():
        rows = np.asarray(idx)
        values = train.scores[rows[held[rows]]]
        if len(values) >= min_rows and need_spread and len(values) < len(rows) and np.all(values == values[0]):
            log.warning("%s %s section_%02d: its %d held-out reference clips score identically (%r); %s with all "
                        "its train rows", train.detector, machine, section, len(values), float(values[0]), purpose)
            keep[rows] = True
        elif len(values) >= min_rows:
            keep[rows] = held[rows]
        else:
            log.warning(
                "%s %s section_%02d: %d held-out reference clip(s) < %d; %s with all %d train rows "
                "(possibly in-sample, biased)", train.detector, machine, section, int(held[rows].sum()), min_rows,
                purpose, len(rows),
            )
            keep[rows] = True
    rows = np.flatnonzero(keep)
    return ScoreTable(train.detector, [train.clips[i] for i in rows], train.scores[rows], train.source)
