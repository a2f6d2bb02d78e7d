"""What to score: files and folders of WAVs, in-memory waveforms, or windows of long recordings.

Each input becomes an :class:`Item` with a :class:`~hybrid_asd.data.clips.Clip` that says its
section and domain. They come from the file name when it follows a known scheme
(:func:`~hybrid_asd.data.names.parse_clip_path`: DCASE 2020-2024 and MIMII names), else from the
caller (``--section``/``--domain``); a system of one section needs no ``--section``. The domain may
stay ``unknown`` (DCASE 2022+ evaluation names, recordings from the field). Problems with one input
are :class:`InputError` lines naming the file, so the caller can skip it and go on.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from hybrid_asd.data.clips import Clip
from hybrid_asd.data.names import UNKNOWN_DOMAIN, NameParseError, parse_clip_path
from hybrid_asd.errors import DataError

log = logging.getLogger(__name__)

DOMAIN_CHOICES = ("source", "target", UNKNOWN_DOMAIN)
DEFAULT_BATCH = 64  # clips scored per batch: the stages score whole sections at once, so bigger is closer to them
AUDIO_GLOBS = ("*.wav", "*.WAV")


class InputError(DataError):
    """One input that cannot be scored; the message is one line naming it."""


@dataclass(frozen=True)
class Item:
    """One clip to score: a whole file, a window ``[start, end)`` seconds of a file, or a waveform."""

    key: str  # unique name in the output: the file's absolute path, "<path>#<start>-<end>", "<waveform i>"
    clip: Clip  # machine, section, domain (used), label (from the name or "unknown"); clip.path = key
    path: Path | None = None  # the audio file (None for a waveform)
    start: float | None = None  # window bounds in seconds (None for a whole clip)
    end: float | None = None
    wave: np.ndarray | None = None  # the waveform, at the sample rate of ``sample_rate`` (None for files)
    sample_rate: int | None = None


def absolute(path: str | os.PathLike) -> Path:
    """The absolute path without resolving links (as the manifests store clip paths)."""
    return Path(os.path.abspath(path))


def expand_paths(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """WAV files of files and folders (folders searched recursively, sorted); a file given
    explicitly is taken whatever its suffix. Returns ``(files, errors)``; duplicates are dropped."""
    files: list[Path] = []
    errors: list[str] = []
    for src in map(Path, paths):
        if src.is_dir():
            found = sorted({p for pattern in AUDIO_GLOBS for p in src.rglob(pattern) if p.is_file()})
            if not found:
                errors.append(f"{src}: folder holds no .wav files")
            files.extend(found)
        elif src.is_file():
            files.append(src)
        else:
            errors.append(f"{src}: no such file or folder")
    unique = list(dict.fromkeys(absolute(p) for p in files))
    return unique, errors


def describe_file(
    path: Path, machine: str, sections: Sequence[int], *, section: int | None = None, domain: str | None = None
) -> Clip:
    """The clip record of a file to score: section, domain and label from its name when the name
    follows a known scheme, else ``section``/``domain`` (see the module docstring)."""
    try:
        named = parse_clip_path(path, machine=machine)
        clip = replace(named, path=path, machine=machine, split="test")
        if clip.domain == UNKNOWN_DOMAIN and domain is not None:
            clip = replace(clip, domain=domain)
    except NameParseError:
        clip = Clip(path=path, machine=machine, section=_flag_section(path, sections, section),
                    domain=domain or UNKNOWN_DOMAIN, split="test", label="unknown")
    check_section(str(path), machine, clip.section, sections)
    return clip


def describe_waveform(key: str, machine: str, sections: Sequence[int], *, section: int | None,
                      domain: str | None) -> Clip:
    clip = Clip(path=Path(key), machine=machine, section=_flag_section(Path(key), sections, section),
                domain=domain or UNKNOWN_DOMAIN, split="test", label="unknown")
    check_section(key, machine, clip.section, sections)
    return clip


def _flag_section(path: Path, sections: Sequence[int], section: int | None) -> int:
    if section is not None:
        return section
    if len(sections) == 1:
        return sections[0]
    raise InputError(f"{path}: cannot tell the section (the name follows no known scheme); pass --section NN "
                     f"(the system knows sections {format_sections(sections)})")


def check_section(name: str, machine: str, section: int, sections: Sequence[int]) -> None:
    if section not in sections:
        raise InputError(f"{name}: section {section:02d} is unknown to the system (it knows {machine} sections "
                         f"{format_sections(sections)})")


def format_sections(sections: Iterable[int]) -> str:
    return ", ".join(f"{s:02d}" for s in sorted(sections))


def check_domain(domain: str | None) -> None:
    if domain is not None and domain not in DOMAIN_CHOICES:
        raise DataError(f"domain {domain!r} is not one of {', '.join(DOMAIN_CHOICES)}")


def plan_windows(name: str, duration: float, window: float, hop: float) -> list[tuple[float, float]]:
    """``[start, end)`` of every whole window of ``window`` seconds every ``hop`` seconds; a
    recording shorter than one window is an :class:`InputError`. A tail shorter than a window is
    left out."""
    if not (window > 0 and hop > 0):
        raise DataError(f"--window and --hop must be > 0 seconds, got {window} and {hop}")
    if duration + 1e-9 < window:
        raise InputError(f"{name}: the recording lasts {duration:.2f} s, shorter than one --window of {window:g} s")
    count = int(math.floor((duration - window) / hop + 1e-9)) + 1
    return [(round(i * hop, 6), round(i * hop + window, 6)) for i in range(count)]


def window_key(path: Path, start: float, end: float) -> str:
    return f"{path}#{start:.3f}-{end:.3f}"
