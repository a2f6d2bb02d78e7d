"""``hybrid-asd predict``: score new recordings with a trained system and write the records.

Files and folders are scored first, then (``--watch``) new files of a folder as they appear. Records
go to ``--out`` (CSV or JSON lines, see :mod:`hybrid_asd.monitor.records`) as they are scored and the
file is moved into place at the end, on an error or on Ctrl-C, so nothing scored is lost; a bad
input is reported, skipped and listed at the end.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from hybrid_asd.errors import DataError
from hybrid_asd.monitor.inputs import DEFAULT_BATCH, absolute
from hybrid_asd.monitor.records import RecordWriter
from hybrid_asd.monitor.system import System, load_system
from hybrid_asd.monitor.watch import DEFAULT_INTERVAL, watch_folder

log = logging.getLogger(__name__)


@dataclass
class PredictSummary:
    """What a predict run did."""

    scored: int  # records written
    errors: list[str] = field(default_factory=list)  # one line per input left out
    out: Path | None = None
    stopped: bool = False  # a --watch ended by Ctrl-C


def run_predict(
    source: str | Path | Sequence[str | Path],
    paths: Sequence[str | Path] = (),
    *,
    weights: str | Path | None = None,
    section: int | None = None,
    domain: str | None = None,
    out: str | Path | None = None,
    window: float | None = None,
    hop: float | None = None,
    watch: str | Path | None = None,
    interval: float = DEFAULT_INTERVAL,
    device: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    max_polls: int | None = None,
    system: System | None = None,
) -> PredictSummary:
    """Score ``paths`` (and, with ``watch``, new files of that folder until Ctrl-C or ``max_polls``)
    with the system of ``source`` (see :func:`~hybrid_asd.monitor.system.load_system`; or an already
    loaded ``system``)."""
    if not paths and watch is None:
        raise DataError("nothing to score: give files or folders, or --watch DIR")
    if system is None:
        system = load_system(source, weights=weights, device=device)
    errors: list[str] = []

    def on_error(message: str) -> None:
        log.warning("skipped %s", message)
        errors.append(message)

    options = dict(section=section, domain=domain, window=window, hop=hop, on_error=on_error, batch_size=batch_size)
    stopped = False
    with RecordWriter(out, system.member_names, append=watch is not None) as writer:
        if paths:
            for record in system.iter_scores(list(paths), progress=progress, **options):
                writer.write(record)
        if watch is not None:
            done = {path for path, _ in writer.done}

            def score_new(files: list[Path]) -> None:
                for record in system.iter_scores(files, progress=False, **options):
                    writer.write(record)
                    done.add(record.path)
                log.info("scored %d new file(s); %d record(s) so far", len(files), writer.count)

            try:
                watch_folder(watch, score_new, interval=interval, skip=lambda p: str(absolute(p)) in done,
                             sleep=sleep, max_polls=max_polls)
            except KeyboardInterrupt:
                stopped = True
                log.info("stopped watching %s", watch)
    return PredictSummary(writer.count, errors, None if out is None else Path(out), stopped)
