"""Parse official DCASE / MIMII file names into :class:`~hybrid_asd.data.clips.Clip` records.

Schemes (``Clip.scheme``):

``dcase2020``
    ``<machine>/{train,test}/{normal,anomaly}_id_04_00000012.wav``: section = machine id, domain
    "source", split from the folder. The 2020 evaluation names ``id_05_00000000.wav`` give label
    "unknown" (the 2020 ground-truth format is not read here).
``dcase2021``
    ``<machine>/{train,source_test,target_test}/section_00_source_train_normal_0000_<attributes>.wav``
    and the unlabelled evaluation names ``section_03_source_test_0000.wav`` (label "unknown").
``dcase2022`` (2022-2024)
    ``<machine>/{train,test}/section_00_target_test_anomaly_0012_<attributes>.wav``: the same
    grammar as 2021, told apart by the folder layout (2021 has ``source_test``/``target_test``
    folders; a ``train`` file is "dcase2021" when such a sibling folder exists). The 2022-2024
    evaluation names ``section_00_0000.wav`` hide the domain: ``domain`` is "unknown" and the label
    "unknown" until a ground-truth join (:func:`hybrid_asd.data.manifest.scan`) fills both.
``dcase2022`` also covers DCASE 2025 and 2026 (the same grammar): 2025 attribute tails may be empty
    (``section_00_source_train_normal_0000_.wav``) or hidden (``..._0000_noAttribute.wav``); 2026 names end
    in a noise part (``..._car_A2_spd_28V_mic_1_noise_1.wav``), kept as the attribute ``noise``.
``supplemental`` (DCASE 2025 and later)
    ``<machine>/supplemental/section_00_machine_0001_.wav``: supplemental recordings of a machine type
    (clean machine sound, or noise only). ``kind`` is the word after the section (``machine`` in the
    official baseline's README; other words, e.g. ``noise``, are kept as written), ``split``
    "supplemental", label "normal", domain "unknown" (the names carry none). Only files in a
    ``supplemental`` folder are read this way.
``mimii``
    MIMII (2019) ``<machine>/id_00/{normal,abnormal}/00000000.wav``: section = id, domain "source",
    label from the folder, and split "test" for every clip: MIMII has no official train/test
    split; :func:`hybrid_asd.data.manifest.scan` makes the MIMII baseline's split.

Attributes: the tail after the clip number, split on "_" and paired as key/value when the count
is even and no key is a number (``car_C2_spd_34V_mic_1`` -> car=C2, spd=34V, mic=1); otherwise
``attributes`` is empty, except that a final ``noise_<n>`` (DCASE 2026) is always kept as the pair
noise=<n> (``noAttribute_noise_1`` -> noise=1). ``attributes_raw`` always holds the raw tail.
"""

from __future__ import annotations

import re
from pathlib import Path

from hybrid_asd.data.clips import MIMII_LABEL_NAMES, Clip
from hybrid_asd.errors import DataError

__all__ = ["NameParseError", "parse_clip_path", "parse_attributes", "SPLIT_FOLDERS", "SUPPLEMENTAL", "UNKNOWN_DOMAIN"]

UNKNOWN_DOMAIN = "unknown"  # 2022-2024 evaluation names do not say the domain
SUPPLEMENTAL = "supplemental"  # DCASE 2025+: <machine>/supplemental/ folder, and the split of its clips

# Folder name -> (split, domain implied by the folder or None).
SPLIT_FOLDERS: dict[str, tuple[str, str | None]] = {
    "train": ("train", None),
    "test": ("test", None),
    SUPPLEMENTAL: (SUPPLEMENTAL, None),
    "source_test": ("test", "source"),
    "target_test": ("test", "target"),
}
_DCASE2021_ONLY_FOLDERS = ("source_test", "target_test")

_SECTION_NAME = re.compile(
    r"^section_(?P<section>\d+)_(?P<domain>source|target)_(?P<split>train|test)"
    r"_(?P<label>normal|anomaly)_(?P<index>\d+)(?:_(?P<attrs>.*))?$"  # 2025: "..._0000_.wav" (empty tail)
)
_SUPPLEMENTAL_NAME = re.compile(
    r"^section_(?P<section>\d+)_(?P<kind>[A-Za-z][A-Za-z0-9-]*)_(?P<index>\d+)(?:_(?P<attrs>.*))?$"
)
_NOISE_TAIL = re.compile(r"^(?:(?P<head>.*)_)?noise_(?P<value>[^_]+)$")  # DCASE 2026: "..._noise_1"
_SECTION_EVAL_2021 = re.compile(r"^section_(?P<section>\d+)_(?P<domain>source|target)_(?P<split>test)_(?P<index>\d+)$")
_SECTION_EVAL_2022 = re.compile(r"^section_(?P<section>\d+)_(?P<index>\d+)$")
_DCASE2020_NAME = re.compile(r"^(?P<label>normal|anomaly)_id_(?P<section>\d+)_(?P<index>\d+)$")
_DCASE2020_EVAL = re.compile(r"^id_(?P<section>\d+)_(?P<index>\d+)$")
_MIMII_ID_FOLDER = re.compile(r"^id_(?P<section>\d+)$")
_MIMII_LABELS = MIMII_LABEL_NAMES
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d*)?$")

_KNOWN_SCHEMES = (
    "section_<nn>_<source|target>_<train|test>_<normal|anomaly>_<nnnn>[_<attributes>] (2021-2024), "
    "section_<nn>_<source|target>_test_<nnnn> (2021 eval), section_<nn>_<nnnn> (2022-2024 eval), "
    "<normal|anomaly>_id_<nn>_<nnnnnnnn> and id_<nn>_<nnnnnnnn> (2020), "
    "<machine>/id_<nn>/<normal|abnormal>/<nnnnnnnn>.wav (MIMII)"
)
_SUPPLEMENTAL_SCHEME = "section_<nn>_<kind>_<nnnn>[_<attributes>] (e.g. section_00_machine_0001_.wav)"


class NameParseError(DataError):
    """A file name that matches no known naming scheme; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def parse_attributes(raw: str) -> tuple[tuple[str, str], ...]:
    """Key/value pairs from an attribute tail, or ``()`` when the tail does not pair up; a final
    ``noise_<n>`` (DCASE 2026) is kept as noise=<n> even when the rest does not pair up."""
    pairs = _pair_tokens(raw)
    if pairs or not raw:
        return pairs
    if m := _NOISE_TAIL.match(raw):
        return _pair_tokens(m["head"] or "") + (("noise", m["value"]),)
    return ()


def _pair_tokens(raw: str) -> tuple[tuple[str, str], ...]:
    if not raw:
        return ()
    tokens = raw.split("_")
    if len(tokens) % 2 or any(not token for token in tokens):
        return ()
    keys, values = tokens[0::2], tokens[1::2]
    if any(_NUMBER.match(key) for key in keys):
        return ()
    return tuple(zip(keys, values))


def parse_clip_path(path: str | Path, machine: str | None = None) -> Clip:
    """Parse one clip path into a :class:`Clip`.

    Args:
        path: the clip, laid out as ``<machine>/<split folder>/<name>.wav`` (MIMII:
            ``<machine>/id_<nn>/<normal|abnormal>/<nnnnnnnn>.wav``).
        machine: machine type; defaults to the folder two levels up (MIMII: three levels up).

    Raises:
        NameParseError: the name matches no scheme, or its parts contradict the folder layout.
    """
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise NameParseError(path, f"not a .wav file (suffix {path.suffix!r})")
    if _is_mimii_path(path):
        return _parse_mimii(path, machine)
    machine = machine if machine is not None else path.parent.parent.name
    if not machine:
        raise NameParseError(path, "cannot tell the machine type (no <machine>/<split>/ folders above the file)")
    stem = path.stem
    if path.parent.name == SUPPLEMENTAL:
        return _parse_supplemental(path, stem, machine)
    for parser in (_parse_section_name, _parse_dcase2020_name):
        clip = parser(path, stem, machine)
        if clip is not None:
            return clip
    raise NameParseError(path, f"file name matches no known scheme; expected one of: {_KNOWN_SCHEMES}")


# --- scheme parsers ------------------------------------------------------------------------------


def _folder_split(path: Path) -> tuple[str | None, str | None]:
    """(split, domain) implied by the parent folder, or (None, None) for an unknown folder."""
    return SPLIT_FOLDERS.get(path.parent.name, (None, None))


def _check_folder_agrees(path: Path, split: str, domain: str | None) -> None:
    folder_split, folder_domain = _folder_split(path)
    if folder_split is not None and folder_split != split:
        raise NameParseError(path, f"name says split {split!r} but it lies in folder {path.parent.name!r}")
    if folder_domain is not None and domain not in (None, UNKNOWN_DOMAIN) and folder_domain != domain:
        raise NameParseError(path, f"name says domain {domain!r} but it lies in folder {path.parent.name!r}")


def _section_scheme(path: Path) -> str:
    """"dcase2021" for the source_test/target_test layout, else "dcase2022" (2022-2024)."""
    if path.parent.name in _DCASE2021_ONLY_FOLDERS:
        return "dcase2021"
    machine_dir = path.parent.parent
    if any((machine_dir / name).is_dir() for name in _DCASE2021_ONLY_FOLDERS):
        return "dcase2021"
    return "dcase2022"


def _parse_section_name(path: Path, stem: str, machine: str) -> Clip | None:
    if m := _SECTION_NAME.match(stem):
        raw = m["attrs"] or ""
        _check_folder_agrees(path, m["split"], m["domain"])
        return Clip(
            path=path, machine=machine, section=int(m["section"]), domain=m["domain"], split=m["split"],
            label=m["label"], index=int(m["index"]), attributes=parse_attributes(raw), attributes_raw=raw,
            scheme=_section_scheme(path),
        )  # fmt: skip
    if m := _SECTION_EVAL_2021.match(stem):
        _check_folder_agrees(path, "test", m["domain"])
        return Clip(
            path=path, machine=machine, section=int(m["section"]), domain=m["domain"], split="test",
            label="unknown", index=int(m["index"]), scheme=_section_scheme(path),
        )  # fmt: skip
    if m := _SECTION_EVAL_2022.match(stem):
        _check_folder_agrees(path, "test", None)
        folder_domain = _folder_split(path)[1]
        return Clip(
            path=path, machine=machine, section=int(m["section"]), domain=folder_domain or UNKNOWN_DOMAIN,
            split="test", label="unknown", index=int(m["index"]), scheme="dcase2022",
        )  # fmt: skip
    return None


def _parse_supplemental(path: Path, stem: str, machine: str) -> Clip:
    m = _SUPPLEMENTAL_NAME.match(stem)
    if m is None:
        raise NameParseError(path, f"file in a {SUPPLEMENTAL!r} folder, but its name is not {_SUPPLEMENTAL_SCHEME}")
    raw = m["attrs"] or ""
    return Clip(
        path=path, machine=machine, section=int(m["section"]), domain=UNKNOWN_DOMAIN, split=SUPPLEMENTAL,
        label="normal", index=int(m["index"]), attributes=parse_attributes(raw), attributes_raw=raw,
        scheme=SUPPLEMENTAL, kind=m["kind"],
    )  # fmt: skip


def _parse_dcase2020_name(path: Path, stem: str, machine: str) -> Clip | None:
    if m := _DCASE2020_NAME.match(stem):
        split = _folder_split(path)[0]
        if split is None:
            raise NameParseError(
                path, f"DCASE 2020 name, but folder {path.parent.name!r} is neither 'train' nor 'test'"
            )
        return Clip(
            path=path, machine=machine, section=int(m["section"]), domain="source", split=split,
            label=m["label"], index=int(m["index"]), scheme="dcase2020",
        )  # fmt: skip
    if m := _DCASE2020_EVAL.match(stem):
        _check_folder_agrees(path, "test", None)
        return Clip(
            path=path, machine=machine, section=int(m["section"]), domain="source", split="test",
            label="unknown", index=int(m["index"]), scheme="dcase2020",
        )  # fmt: skip
    return None


def _is_mimii_path(path: Path) -> bool:
    return path.parent.name in _MIMII_LABELS and _MIMII_ID_FOLDER.match(path.parent.parent.name) is not None


def _parse_mimii(path: Path, machine: str | None) -> Clip:
    if not path.stem.isdigit():
        raise NameParseError(path, "MIMII layout, but the file name is not a clip number like 00000000.wav")
    machine = machine if machine is not None else path.parent.parent.parent.name
    if not machine:
        raise NameParseError(path, "cannot tell the machine type (no <machine>/id_<nn>/ folders above the file)")
    id_match = _MIMII_ID_FOLDER.match(path.parent.parent.name)
    assert id_match is not None  # checked by _is_mimii_path
    return Clip(
        path=path, machine=machine, section=int(id_match["section"]), domain="source", split="test",
        label=_MIMII_LABELS[path.parent.name], index=int(path.stem), scheme="mimii",
    )  # fmt: skip
