"""Scan a data root into a :class:`Manifest` of clips, with every unparsable file reported.

Layouts walked under ``root``:

* DCASE 2020-2024: ``<machine>/<split folder>/*.wav`` (``train``, ``test``, ``source_test``, ``target_test``;
  any other non-hidden folder is walked too and its names must say their split);
* MIMII: ``<machine>/id_<nn>/{normal,abnormal}/*.wav``. MIMII has no official train/test split;
  :func:`split_mimii` makes the one of the MIMII paper's baseline (Purohit et al. 2019, the
  ``dataset_generator`` of MIMII-hitachi/mimii_baseline): per machine type and id, every abnormal
  clip and as many normal clips (the first ones in sorted order) are test clips, the remaining
  normal clips are training clips. ``mimii_test_normals`` (config ``data.mimii_test_normals``, CLI
  ``--mimii-test-normals``) sets the number of normal test clips per id instead, for small folders
  where the baseline's rule would leave no training clip.

A ``.wav`` whose name matches no scheme lands in ``Manifest.problems`` with the reason, never
silently dropped. With ``ground_truth`` (a folder of official ``ground_truth_*.csv`` files),
unlabelled evaluation clips get their label, and 2022-2024 names their domain, from it; a clip
without an entry stays "unknown" and is also listed as a problem.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hybrid_asd.data.audio import audio_info
from hybrid_asd.data.channels import ChannelChoice, channel_used
from hybrid_asd.data.clips import LABELS, Clip
from hybrid_asd.data.ground_truth import GroundTruthKey, read_ground_truth_dir
from hybrid_asd.data.names import UNKNOWN_DOMAIN, NameParseError, parse_clip_path
from hybrid_asd.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["AudioExpectations", "Manifest", "no_training_clips_reason", "scan", "split_mimii"]

_CLIP_FIELDS = frozenset(f.name for f in fields(Clip))
_MIMII_LABEL_FOLDERS = ("normal", "abnormal")
_SUMMARY_PROBLEMS = 5  # reasons quoted in the summary

GroupKey = tuple[str, int, str, str]  # (machine, section, domain, split)


@dataclass
class Manifest:
    """Clips found under a data root, and the files that could not be parsed."""

    clips: list[Clip] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    root: Path | None = None
    # with check_audio: files that are used but differ from the expected format (other sample rate,
    # several channels, shorter than one patch), (path, what)
    notes: list[tuple[Path, str]] = field(default_factory=list)

    def select(self, **criteria: Any) -> list[Clip]:
        """Clips whose fields equal the criteria, e.g. ``select(machine="fan", split="train")``.

        A criterion may also be a list/tuple/set of accepted values (``section=[0, 1]``).
        """
        unknown = set(criteria) - _CLIP_FIELDS
        if unknown:
            raise ConfigError(f"unknown clip field(s) {sorted(unknown)}; known: {sorted(_CLIP_FIELDS)}")
        accepted = {
            key: set(value) if isinstance(value, (list, tuple, set, frozenset)) else {value}
            for key, value in criteria.items()
        }
        return [clip for clip in self.clips if all(getattr(clip, k) in v for k, v in accepted.items())]

    def machines(self) -> list[str]:
        """Machine types present, sorted."""
        return sorted({clip.machine for clip in self.clips})

    def sections(self, machine: str) -> list[int]:
        """Sections of one machine type, sorted."""
        return sorted({clip.section for clip in self.clips if clip.machine == machine})

    def domains(self, machine: str | None = None) -> list[str]:
        """Domains present (optionally of one machine type), sorted."""
        return sorted({c.domain for c in self.clips if machine is None or c.machine == machine})

    def counts(self) -> dict[GroupKey, dict[str, int]]:
        """``{(machine, section, domain, split): {"normal": n, "anomaly": n, "unknown": n}}``, sorted."""
        tally: Counter[tuple[GroupKey, str]] = Counter(
            ((c.machine, c.section, c.domain, c.split), c.label) for c in self.clips
        )
        groups = sorted({group for group, _ in tally})
        return {group: {label: tally[(group, label)] for label in LABELS} for group in groups}

    def summary(self) -> str:
        """A readable table: one row per machine/section/domain/split with label counts, then problems."""
        header = ("machine", "section", "domain", "split", *LABELS, "total")
        rows = [
            (m, f"{s:02d}", d, sp, *(str(n[label]) for label in LABELS), str(sum(n.values())))
            for (m, s, d, sp), n in self.counts().items()
        ]
        widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
        lines = [
            "  ".join(cell.ljust(w) if i < 4 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in (header, *rows)
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        root = f" under {self.root}" if self.root is not None else ""
        lines.insert(0, f"{len(self.clips)} clips, {len(self.machines())} machine type(s){root}")
        lines.append(f"problems: {len(self.problems)}")
        for path, reason in self.problems[:_SUMMARY_PROBLEMS]:
            lines.append(f"  {path.name}: {reason}")
        if len(self.problems) > _SUMMARY_PROBLEMS:
            lines.append(f"  ... and {len(self.problems) - _SUMMARY_PROBLEMS} more")
        if self.notes:
            kinds: dict[str, list[Path]] = {}
            for path, what in self.notes:
                kinds.setdefault(what, []).append(path)
            lines.append(f"audio notes: {len(self.notes)}")
            for what, paths in kinds.items():
                lines.append(f"  {len(paths)} file(s): {what}, e.g. {paths[0].name}")
        return "\n".join(lines)


def scan(
    root: str | Path,
    machines: list[str] | None = None,
    ground_truth: str | Path | None = None,
    check_audio: bool = False,
    mimii_test_normals: int | None = None,
    audio: AudioExpectations | None = None,
) -> Manifest:
    """Walk ``root/<machine>/<split folder>/*.wav`` into a :class:`Manifest`.

    Args:
        root: data root holding one folder per machine type.
        machines: machine folders to scan; ``None`` scans every non-hidden folder of ``root``.
        ground_truth: folder of official ``ground_truth_<machine>_section_<nn>_<domain>_test.csv``.
        check_audio: also read every header (:func:`hybrid_asd.data.audio.audio_info`): corrupt, empty,
            truncated files and files too short for one log-mel frame become problems instead of clips;
            files at another sample rate, with several channels or shorter than one patch become
            ``notes`` (``audio`` says what is expected; default: the default config's).
        mimii_test_normals: normal test clips per MIMII id (default: as many as its abnormal clips).

    Raises:
        DataError: ``root`` or a requested machine folder is missing, or no ``.wav`` file is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root not found: {root}")
    machine_dirs = _machine_dirs(root, machines)
    manifest = Manifest(root=root)
    for machine_dir in machine_dirs:
        wavs = _machine_wavs(machine_dir)
        if not wavs:
            log.warning("no .wav files under %s", machine_dir)
        for path in wavs:
            _add_clip(manifest, path, machine_dir.name, check_audio, audio or AudioExpectations())
    if not manifest.clips and not manifest.problems:
        names = [d.name for d in machine_dirs]
        raise DataError(f"{root}: no .wav files found under <machine>/<split folder>/ for machines {names}")
    manifest.clips = split_mimii(manifest.clips, mimii_test_normals)
    if ground_truth is not None:
        _join_ground_truth(manifest, Path(ground_truth))
    if manifest.problems:
        log.warning("%d file(s) under %s were not used or lack a label; first: %s: %s", len(manifest.problems),
                    root, manifest.problems[0][0], manifest.problems[0][1])  # fmt: skip
    return manifest


def split_mimii(clips: list[Clip], test_normals: int | None = None) -> list[Clip]:
    """The MIMII baseline's split: per (machine, id), the first n normal clips in sorted path order
    go to test with the n abnormal ones; the other normal clips become training clips.

    ``test_normals`` replaces n (the number of abnormal clips of the id) by a fixed number. Clips of
    other schemes pass unchanged; the order of ``clips`` is kept."""
    mimii = [c for c in clips if c.scheme == "mimii"]
    if not mimii:
        return clips
    n_anomalies = Counter((c.machine, c.section) for c in mimii if c.label == "anomaly")
    normals: dict[tuple[str, int], list[Clip]] = {}
    for clip in mimii:
        if clip.label == "normal":
            normals.setdefault((clip.machine, clip.section), []).append(clip)
    to_train: set[Path] = set()
    for key, group in normals.items():
        n_test = n_anomalies[key] if test_normals is None else test_normals
        to_train.update(c.path for c in sorted(group, key=lambda c: str(c.path))[n_test:])
    return [replace(c, split="train") if c.path in to_train else c for c in clips]


def no_training_clips_reason(manifest: Manifest, machine: str) -> str:
    """Why ``machine`` has no training clip in ``manifest``, in words a user can act on."""
    mimii = [c for c in manifest.clips if c.machine == machine and c.scheme == "mimii"]
    if not mimii:
        found = len([c for c in manifest.clips if c.machine == machine])
        return (f"{found} clip(s) of {machine!r} found, none in a training folder "
                f"(<root>/{machine}/train/)" if found else f"no clips of {machine!r} found")
    parts = []
    for section in sorted({c.section for c in mimii}):
        normal = sum(c.section == section and c.label == "normal" for c in mimii)
        abnormal = sum(c.section == section and c.label == "anomaly" for c in mimii)
        parts.append(f"id_{section:02d}: {normal} normal, {abnormal} abnormal")
    return ("MIMII has no train/test split; the MIMII baseline's rule puts as many normal clips into test as an id "
            f"has abnormal ones, which took every normal clip ({'; '.join(parts)}). Keep fewer normal test clips "
            "per id with --mimii-test-normals N (config data.mimii_test_normals)")


@dataclass(frozen=True)
class AudioExpectations:
    """What ``scan(check_audio=True)`` compares each header with (defaults: the default config's
    ``data`` and ``features``: 16 kHz, channel 0, n_fft 1024, patches of 64 frames of hop 512)."""

    sample_rate: int = 16000
    channel: ChannelChoice = 0  # data.channel: an index, "mean" or "all"
    min_samples: int = 1024 // 2 + 1  # one centred STFT frame (reflect padding)
    patch_samples: int = 63 * 512  # one patch of 64 frames at hop 512

    def check(self, path: Path, info: dict[str, Any]) -> list[str]:
        """Notes on a readable file; a DataError when it is too short to give even one log-mel frame."""
        seconds = info["frames"] / info["sample_rate"]
        samples = int(round(seconds * self.sample_rate))
        if samples < self.min_samples:
            raise DataError(f"{path}: too short ({info['frames']} samples, {seconds:.3f} s): fewer than the "
                            f"{self.min_samples} samples of one log-mel frame")
        notes = []
        if samples < self.patch_samples:
            notes.append(f"shorter than one patch ({self.patch_samples / self.sample_rate:.2f} s): no extractor "
                         "input")
        if info["sample_rate"] != self.sample_rate:
            notes.append(f"sample rate {info['sample_rate']} Hz (resampled to {self.sample_rate} Hz when loaded)")
        if info["channels"] > 1:
            used = channel_used(self.channel, info["channels"])
            notes.append(f"{info['channels']} channels ({used}: data.channel)")
        return notes


def _machine_dirs(root: Path, machines: list[str] | None) -> list[Path]:
    if machines is None:
        dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not dirs:
            raise DataError(f"{root}: no machine folders found")
        return dirs
    dirs = [root / name for name in machines]
    for path in dirs:
        if not path.is_dir():
            raise DataError(f"machine folder not found: {path}")
    return dirs


def _is_wav(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".wav" and not path.name.startswith(".")


def _machine_wavs(machine_dir: Path) -> list[Path]:
    """Every clip below a machine folder, in both the DCASE and the MIMII layout."""
    wavs: list[Path] = []
    for sub in sorted(p for p in machine_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        wavs.extend(p for p in sub.iterdir() if _is_wav(p))
        for label_dir in _MIMII_LABEL_FOLDERS:  # MIMII: <machine>/id_00/{normal,abnormal}/
            if (sub / label_dir).is_dir():
                wavs.extend(p for p in (sub / label_dir).iterdir() if _is_wav(p))
    return sorted(wavs)


def _add_clip(manifest: Manifest, path: Path, machine: str, check_audio: bool, audio: AudioExpectations) -> None:
    try:
        clip = parse_clip_path(path, machine=machine)
        if check_audio:
            manifest.notes.extend((path, note) for note in audio.check(path, audio_info(path)))
    except NameParseError as exc:
        manifest.problems.append((path, exc.reason))
    except DataError as exc:
        manifest.problems.append((path, str(exc).removeprefix(f"{path}: ")))
    else:
        manifest.clips.append(clip)


def _join_ground_truth(manifest: Manifest, folder: Path) -> None:
    """Label unlabelled clips from the official ground truth (and fill 2022-2024 domains)."""
    truth = read_ground_truth_dir(folder)
    by_name: dict[tuple[str, int, str], list[tuple[str, int]]] = {}
    for (machine, section, domain), labels in truth.items():  # for names that hide the domain
        for name, value in labels.items():
            by_name.setdefault((machine, section, name), []).append((domain, value))
    joined: list[Clip] = []
    for clip in manifest.clips:
        if clip.label != "unknown":
            joined.append(clip)
            continue
        found = _lookup(truth, by_name, clip)
        if isinstance(found, str):
            manifest.problems.append((Path(clip.path), found))
            joined.append(clip)
        else:
            domain, value = found
            joined.append(replace(clip, domain=domain, label="anomaly" if value else "normal"))
    manifest.clips = joined


def _lookup(
    truth: dict[GroundTruthKey, dict[str, int]],
    by_name: dict[tuple[str, int, str], list[tuple[str, int]]],
    clip: Clip,
) -> tuple[str, int] | str:
    """(domain, 0|1) of a clip from the ground truth, or the reason it has none."""
    name = clip.name
    if clip.domain == UNKNOWN_DOMAIN:
        hits = by_name.get((clip.machine, clip.section, name), [])
        if len(hits) == 1:
            return hits[0]
        if hits:
            return f"ground truth lists {name} in both domains of {clip.machine} section {clip.section:02d}"
        return f"no ground-truth entry for {name} ({clip.machine} section {clip.section:02d}, either domain)"
    key = (clip.machine, clip.section, clip.domain)
    csv_name = f"ground_truth_{clip.machine}_section_{clip.section:02d}_{clip.domain}_test.csv"
    if key not in truth:
        return f"no ground-truth file {csv_name}"
    if name not in truth[key]:
        return f"no ground-truth entry for {name} in {csv_name}"
    return clip.domain, truth[key][name]
