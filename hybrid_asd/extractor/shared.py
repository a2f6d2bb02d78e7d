"""One network for several experiments (``extractor.train_machines``).

With ``train_machines`` every machine type's experiment of an approach trains on the same clips (all the
types' normal training clips, in one canonical order) with the same settings and seed, so they would all
train the same network. The first experiment trains it and leaves a copy in a store beside the feature
cache (``<feature cache>/extractors/<key>/``); the others copy it from there. The key hashes everything that
decides the weights: the config keys the ``train`` stage reads (``data``, ``features``, ``extractor``, ``seed``;
without ``data.machine``, ``data.root`` and ``train_machines``, which each type words differently), and every
training file by absolute path, size and modification time (two data roots, e.g. synthetic sets of two seeds, never share a network). A file lock
makes an experiment that starts while another trains the same network wait for it instead of training it
twice (demo workers, recipes run side by side). Under torchrun nothing is shared (ranks must not wait on
each other's lock).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Callable, Sequence

from filelock import FileLock

from hybrid_asd.config import Config
from hybrid_asd.data.clips import Clip
from hybrid_asd.errors import DataError
from hybrid_asd.experiment import ExtractorFiles
from hybrid_asd.features.cache import default_cache_dir
from hybrid_asd.stages import fingerprint_keys
from hybrid_asd.utils import atomic_path

log = logging.getLogger(__name__)

STORE_FOLDER = "extractors"


def store_dir(config: Config) -> Path:
    """Where shared networks are kept: ``extractors/`` in the feature cache's folder."""
    return default_cache_dir(config.features) / STORE_FOLDER


def canonical_order(clips: Sequence[Clip]) -> list[Clip]:
    """Training clips by machine type, then path: the same list whichever type's experiment lists them."""
    return sorted(clips, key=lambda c: (c.machine, str(c.path)))


def network_key(config: Config, clips: Sequence[Clip], noise_clips: Sequence[Clip] = ()) -> str:
    """Hash of what decides the shared network's weights (see the module docstring): the config keys the
    ``train`` stage reads (the stage table's), less what differs between the machine types' experiments."""
    assert config.extractor is not None
    settings = config.sections(fingerprint_keys("train"))
    for section, key in (("data", "machine"), ("data", "root"), ("extractor", "train_machines")):
        settings[section].pop(key)
    files = []
    for clip in [*clips, *noise_clips]:
        try:
            stat = Path(clip.path).stat()
        except OSError as exc:
            raise DataError(f"training clip not found or unreadable: {clip.path} ({exc})") from exc
        files.append((str(Path(clip.path).resolve()), stat.st_size, stat.st_mtime_ns))
    blob = {"settings": settings, "files": files, "noise_files": len(noise_clips)}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def train_once(files: ExtractorFiles, store: Path, key: str, train: Callable[[], Path]) -> Path:
    """The experiment's checkpoint: copied from ``store/key`` when another experiment trained it, else
    ``train()`` and a copy left there. Returns the experiment's checkpoint path."""
    entry = store / key
    store.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        stored = ExtractorFiles.in_folder(entry)
        if stored.checkpoint.is_file():  # written last: a present checkpoint is a complete entry
            files.folder.mkdir(parents=True, exist_ok=True)
            if stored.train_log.is_file():
                _copy(stored.train_log, files.train_log)
            _copy(stored.checkpoint, files.checkpoint)
            files.train_state.unlink(missing_ok=True)  # an interrupted training of this experiment's own
            log.info("reusing the network another experiment trained on the same clips and settings (%s)", entry)
            return files.checkpoint
        path = train()
        entry.mkdir(parents=True, exist_ok=True)
        if files.train_log.is_file():
            _copy(files.train_log, stored.train_log)
        _copy(path, stored.checkpoint)
        log.info("kept a copy of the network for the other machine types' experiments: %s", entry)
        return path


__all__ = ["STORE_FOLDER", "canonical_order", "network_key", "store_dir", "train_once"]
