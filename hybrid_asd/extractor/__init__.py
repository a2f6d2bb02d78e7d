"""Feature extractor: a section classifier on log-mel patches whose embeddings and OE scores
feed the detectors.

- :mod:`~hybrid_asd.extractor.backbones`: ``BACKBONES``, :func:`build_backbone` (timm models or
  registered networks such as ``tiny_cnn``), :class:`ExtractorModel`, :func:`build_model`.
- :mod:`~hybrid_asd.extractor.multibranch`: the ``multibranch`` whole-clip waveform network
  (spectrum + STFT branches); :mod:`~hybrid_asd.extractor.waveforms`: its waveform data.
- :mod:`~hybrid_asd.extractor.heads`: ``HEADS`` (softmax, arcface, adacos, subcluster_adacos).
- :mod:`~hybrid_asd.extractor.labels`: :func:`make_labels` (section, section_domain,
  section_attribute_domain, section_attribute).
- :mod:`~hybrid_asd.extractor.train`: :func:`train_extractor` (resumable, DDP under torchrun).
- :mod:`~hybrid_asd.extractor.embed`: :func:`extract` (embeddings + OE scores).
- :mod:`~hybrid_asd.extractor.checkpoint`: :func:`save_checkpoint`, :func:`load_checkpoint`.
- :mod:`~hybrid_asd.extractor.stage`: :func:`run_train`, :func:`run_extract` (experiment stages).

Names are imported lazily: ``hybrid_asd.config`` imports this package's ``defaults`` and must not
pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BACKBONES": "backbones",
    "ExtractorModel": "backbones",
    "build_backbone": "backbones",
    "build_model": "backbones",
    "HEADS": "heads",
    "build_head": "heads",
    "make_labels": "labels",
    "train_extractor": "train",
    "extract": "embed",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "run_train": "stage",
    "run_extract": "stage",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"hybrid_asd.extractor.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'hybrid_asd.extractor' has no attribute {name!r}")
