"""Class labels of the feature extractor's auxiliary classification task.

Schemes (``extractor.labels``):

- ``section``: one class per section (machine type + section), the MobileNetV2 baseline;
- ``section_domain``: one class per section and domain, so a section's few target-domain clips
  form their own class;
- ``section_attribute_domain``: source-domain clips get one class per section and attribute
  string (e.g. ``fan/section_00/source/...``), the target-domain clips of a section one class
  together (they are too few, about 3, to split by attribute);
- ``section_attribute``: every clip, target clips included, gets one class per section, domain and
  attribute string: the labels of Wilkinghoff (ICASSP 2023) and ASDKit's
  ``machine_section_attr_domain``; clips without attributes (DCASE 2021 names) fall back to
  section x domain.

Sections are identified as ``<machine>/section_<nn>``; ``class_to_section[i]`` is the index of
class ``i``'s section in :func:`section_names` of the same clips (sorted).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from hybrid_asd.data.clips import Clip
from hybrid_asd.errors import ConfigError

SCHEMES = ("section", "section_domain", "section_attribute_domain", "section_attribute")


def section_key(clip: Clip) -> str:
    return f"{clip.machine}/{clip.section_name}"


def section_names(clips: Sequence[Clip]) -> list[str]:
    """Sorted unique section keys of ``clips``."""
    return sorted({section_key(c) for c in clips})


def attribute_string(clip: Clip) -> str:
    """The clip's attributes as in its file name (empty when it has none)."""
    return clip.attributes_raw or "_".join(f"{k}_{v}" for k, v in clip.attributes)


def class_key(clip: Clip, scheme: str) -> str:
    """The class name of one clip under ``scheme``."""
    section = section_key(clip)
    if scheme == "section":
        return section
    if scheme == "section_domain":
        return f"{section}/{clip.domain}"
    if scheme == "section_attribute_domain":
        if clip.domain == "target":
            return f"{section}/target"
        return f"{section}/{clip.domain}/{attribute_string(clip) or 'none'}"
    if scheme == "section_attribute":
        attributes = attribute_string(clip)
        return f"{section}/{clip.domain}/{attributes}" if attributes else f"{section}/{clip.domain}"
    raise ConfigError(f"unknown extractor.labels scheme {scheme!r}; known: {', '.join(SCHEMES)}")


def make_labels(clips: Sequence[Clip], scheme: str) -> tuple[np.ndarray, list[str], list[int]]:
    """Class ids of ``clips`` under ``scheme``.

    Returns ``(label_ids (N,) int64, classes (sorted class names), class_to_section)`` where
    ``class_to_section[i]`` indexes :func:`section_names` ``(clips)``.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown extractor.labels scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    keys = [class_key(c, scheme) for c in clips]
    classes = sorted(set(keys))
    index = {name: i for i, name in enumerate(classes)}
    sections = section_names(clips)
    section_index = {name: i for i, name in enumerate(sections)}
    class_to_section = [-1] * len(classes)
    for clip, key in zip(clips, keys):
        class_to_section[index[key]] = section_index[section_key(clip)]
    label_ids = np.asarray([index[k] for k in keys], dtype=np.int64)
    return label_ids, classes, class_to_section
