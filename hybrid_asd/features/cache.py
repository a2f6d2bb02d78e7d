"""On-disk cache of per-clip log-mel spectrograms, keyed by config and file content.

Each entry is ``<cache_dir>/<key[:2]>/<key>.npy`` (float32, ``(n_mels, T)``; ``(channels, n_mels, T)``
with ``data.channel: all``), where ``key`` is
the SHA-256 of the front-end config, the audio-loading config and the SHA-256 of the file's
bytes: renaming or moving a clip keeps its entry, editing it or changing a setting misses.
Entries are written atomically (temporary file, then rename), so an interrupted run leaves
at most a stray ``.<key>.npy.*.tmp`` file that lookups ignore, never a broken entry.

Default folder: ``features.cache_dir`` if set, else ``$HYBRID_ASD_CACHE``, else
``~/.cache/hybrid_asd/features`` (never the current folder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from hybrid_asd.data.audio import load_audio
from hybrid_asd.data.settings import DataSettings
from hybrid_asd.errors import DataError
from hybrid_asd.features.logmel import LogMel
from hybrid_asd.features.settings import FeatureSettings
from hybrid_asd.utils import atomic_save_npy, remove_stale_temp_files, resolve_device

log = logging.getLogger(__name__)

ENV_CACHE_DIR = "HYBRID_ASD_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/hybrid_asd/features")
# Bump when the computation changes in a way the config does not show, to retire old entries.
CACHE_FORMAT = "hybrid_asd.features.logmel/1"
_HASH_CHUNK = 1 << 20


def default_cache_dir(features: FeatureSettings | None = None) -> Path:
    """``features.cache_dir`` if set, else ``$HYBRID_ASD_CACHE``, else ``~/.cache/hybrid_asd/features``."""
    if features is not None and features.cache_dir is not None:
        return features.cache_dir.expanduser()
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    return DEFAULT_CACHE_DIR.expanduser()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FeatureCache:
    """Log-mel features of audio files, computed once (batched torch) and kept on disk.

    Args:
        features: the ``features`` config section (front-end keys and ``cache_dir``); a mapping
            is validated into one (missing keys take their defaults).
        data: the ``data`` config section (``sample_rate``, ``channel``, ``duration`` and
            ``resample`` decide how audio is loaded); a mapping is validated likewise.
        cache_dir: overrides :func:`default_cache_dir`.
        device: where the log-mel is computed ("cpu", "cuda", "auto").
    """

    def __init__(
        self,
        features: FeatureSettings | Mapping[str, Any],
        data: DataSettings | Mapping[str, Any],
        cache_dir: str | Path | None = None,
        device: str = "cpu",
    ) -> None:
        features = FeatureSettings.parse(features, where="features")
        data = DataSettings.parse(data, where="data")
        # Typed values (duration 10 is 10.0), so equal settings share entries.
        self.audio_conf = {
            "sample_rate": data.sample_rate, "channel": data.channel, "duration": data.duration,
            "resample": data.resample,
        }
        self.frontend = LogMel.from_config(features, sample_rate=data.sample_rate)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(features)
        self.device = resolve_device(device)
        self.frontend.to(self.device)
        self._config_blob = json.dumps(
            {"format": CACHE_FORMAT, "front_end": self.front_end_conf(), "audio": self.audio_conf},
            sort_keys=True,
        )
        # (resolved path, size, mtime_ns) -> content hash: saves re-reading files within a run.
        self._content_hashes: dict[tuple[str, int, int], str] = {}

    def __repr__(self) -> str:
        return f"FeatureCache(cache_dir={str(self.cache_dir)!r}, device={self.device!r}, {self.frontend.extra_repr()})"

    def front_end_conf(self) -> dict[str, Any]:
        """The resolved front-end parameters (normalised types, defaults filled in)."""
        fe = self.frontend
        return {
            "n_fft": fe.n_fft, "hop_length": fe.hop_length, "n_mels": fe.n_mels, "power": fe.power,
            "fmin": fe.fmin, "fmax": fe.fmax, "center": fe.center, "pad_mode": fe.pad_mode,
        }

    # ----------------------------------------------------------------------------- keys
    def content_hash(self, path: str | os.PathLike) -> str:
        """SHA-256 of the file's bytes (remembered per path, size and mtime within this object)."""
        path = Path(path)
        try:
            stat = path.stat()
            memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
            if memo not in self._content_hashes:
                self._content_hashes[memo] = file_sha256(path)
        except OSError as exc:
            raise DataError(f"audio file not found or unreadable: {path} ({exc})") from exc
        return self._content_hashes[memo]

    def key(self, path: str | os.PathLike) -> str:
        """Cache key of a file under this config."""
        blob = f"{self._config_blob}\n{self.content_hash(path)}".encode()
        return hashlib.sha256(blob).hexdigest()

    def entry_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.npy"

    # ----------------------------------------------------------------------------- public API
    def get(self, path: str | os.PathLike) -> np.ndarray:
        """Log-mel ``(n_mels, T)`` float32 of one file (computed and stored on a miss)."""
        return self.get_many([path], progress=False)[0]

    def get_many(
        self, paths: Sequence[str | os.PathLike], progress: bool = True, batch_size: int = 32
    ) -> list[np.ndarray]:
        """Log-mels of many files, in order; misses are computed ``batch_size`` files at a time."""
        keys = [self.key(p) for p in paths]
        found: dict[str, np.ndarray] = {}
        missing: dict[str, str | os.PathLike] = {}
        for path, key in zip(paths, keys):
            if key in found or key in missing:
                continue
            array = self._read_entry(key)
            if array is None:
                missing[key] = path
            else:
                found[key] = array
        self._compute(missing, found, progress=progress, batch_size=batch_size)
        return [found[k] for k in keys]

    def ensure(self, paths: Iterable[str | os.PathLike], progress: bool = True, batch_size: int = 32) -> int:
        """Compute and store every missing entry without keeping arrays; returns how many were computed."""
        missing: dict[str, str | os.PathLike] = {}
        for path in paths:
            key = self.key(path)
            if key not in missing and not self.entry_path(key).is_file():
                missing[key] = path
        return self._compute(missing, None, progress=progress, batch_size=batch_size)

    # ----------------------------------------------------------------------------- internals
    def _read_entry(self, key: str) -> np.ndarray | None:
        entry = self.entry_path(key)
        if not entry.is_file():
            return None
        try:
            array = np.load(entry, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            log.warning("unreadable feature cache entry %s (%s); recomputing", entry, exc)
            return None
        ndim = 3 if self.audio_conf["channel"] == "all" else 2
        if array.ndim != ndim or array.shape[-2] != self.frontend.n_mels or array.dtype != np.float32:
            log.warning("feature cache entry %s has shape %s %s; recomputing", entry, array.shape, array.dtype)
            return None
        return array

    def _compute(
        self,
        missing: dict[str, str | os.PathLike],
        keep: dict[str, np.ndarray] | None,
        *,
        progress: bool,
        batch_size: int,
    ) -> int:
        """Compute the ``missing`` entries in batches, write them, add them to ``keep``."""
        if not missing:
            return 0
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        log.info("computing %d log-mel feature(s) into %s", len(missing), self.cache_dir)
        remove_stale_temp_files(self.cache_dir)
        items = list(missing.items())
        with tqdm(total=len(items), desc="log-mel", unit="clip", disable=not progress) as bar:
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                waves = [self._load_wave(path) for _, path in chunk]
                for (_, path), wave in zip(chunk, waves):
                    self._check_length(path, wave)
                for key, array in zip((k for k, _ in chunk), self.logmel_batch(waves)):
                    atomic_save_npy(self.entry_path(key), array)
                    if keep is not None:
                        keep[key] = array
                bar.update(len(chunk))
        return len(items)

    def _check_length(self, path: str | os.PathLike, wave: np.ndarray) -> None:
        minimum = self.frontend.min_samples()
        samples = int(wave.shape[-1])  # (n,) or (channels, n) with data.channel: all
        if samples < minimum:
            rate = self.audio_conf["sample_rate"]
            raise DataError(f"{path}: {samples} samples ({samples / rate:.3f} s) is too short for one "
                            f"log-mel frame (features.n_fft {self.frontend.n_fft} needs at least {minimum} samples); "
                            "remove the clip or set data.duration to pad clips")

    def _load_wave(self, path: str | os.PathLike) -> np.ndarray:
        return load_audio(path, **self.audio_conf)

    def logmel_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Log-mels of ``waves`` in input order: one torch call per group of equal shapes (nothing is
        stored; ``hybrid_asd.monitor`` scores new recordings with it). A ``(channels, n)`` waveform
        (``data.channel: all``) gives a ``(channels, n_mels, T)`` log-mel."""
        out: list[np.ndarray | None] = [None] * len(waves)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, wave in enumerate(waves):
            groups.setdefault(tuple(wave.shape), []).append(i)
        with torch.no_grad():
            for indices in groups.values():
                batch = torch.from_numpy(np.stack([waves[i] for i in indices])).to(self.device)
                result = self.frontend(batch).cpu().numpy().astype(np.float32, copy=False)
                for j, i in enumerate(indices):
                    out[i] = result[j]
        return out  # type: ignore[return-value]
