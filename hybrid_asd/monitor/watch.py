"""Watching a folder for new recordings (``hybrid-asd predict --watch DIR``).

Polling, not file-system events: it works the same on local disks, network shares and containers,
and needs no extra dependency (``watchdog`` would add one for little gain at one poll a second or
so). A WAV file counts once it is non-empty and its size and modification time are the same at two
polls in a row, i.e. its writer has finished; each file is handed on once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from hybrid_asd.errors import DataError
from hybrid_asd.monitor.inputs import AUDIO_GLOBS, absolute

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 2.0  # seconds between polls


def snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    """(size, mtime_ns) of every WAV file under ``folder`` (files that vanish meanwhile are left out)."""
    out: dict[Path, tuple[int, int]] = {}
    for pattern in AUDIO_GLOBS:
        for path in folder.rglob(pattern):
            try:
                st = path.stat()
            except OSError:
                continue
            if path.is_file():
                out[absolute(path)] = (st.st_size, st.st_mtime_ns)
    return out


def watch_folder(
    folder: str | Path,
    on_ready: Callable[[list[Path]], None],
    *,
    interval: float = DEFAULT_INTERVAL,
    skip: Callable[[Path], bool] = lambda path: False,
    sleep: Callable[[float], None] = time.sleep,
    max_polls: int | None = None,
) -> int:
    """Poll ``folder`` every ``interval`` seconds and call ``on_ready(files)`` with the files that
    became complete since the last poll (sorted), each once; files for which ``skip`` is true (e.g.
    already scored) are passed over. Runs until Ctrl-C (KeyboardInterrupt, which propagates) or
    ``max_polls`` polls. Returns the number of files handed on."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--watch {folder}: no such folder")
    if interval <= 0:
        raise DataError(f"--interval must be > 0 seconds, got {interval}")
    log.info("watching %s for new WAV files every %g s (Ctrl-C stops)", folder, interval)
    previous: dict[Path, tuple[int, int]] = {}
    handled: set[Path] = set()
    polls = count = 0
    while max_polls is None or polls < max_polls:
        current = snapshot(folder)
        ready = sorted(p for p, sig in current.items()
                       if p not in handled and sig[0] > 0 and previous.get(p) == sig)
        handled.update(ready)
        ready = [p for p in ready if not skip(p)]
        if ready:
            on_ready(ready)
            count += len(ready)
        previous = current
        polls += 1
        if max_polls is None or polls < max_polls:
            sleep(interval)
    return count
