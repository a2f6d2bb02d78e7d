"""Monitoring: score new recordings with a trained system.

- :mod:`~hybrid_asd.monitor.system`: :func:`load_system`, :class:`System` (``score``, ``iter_scores``),
  :func:`decision_thresholds`;
- :mod:`~hybrid_asd.monitor.records`: :class:`ClipScore`, :class:`MemberScore`, :class:`Scores`, the
  CSV / JSON-lines writer and reader;
- :mod:`~hybrid_asd.monitor.inputs`: files, folders, waveforms and windows of long recordings;
- :mod:`~hybrid_asd.monitor.predict`: ``hybrid-asd predict`` (``run_predict``), with
  :mod:`~hybrid_asd.monitor.watch` for ``--watch``;
- :mod:`~hybrid_asd.monitor.export`: the portable system folder (``hybrid-asd export``);
- :mod:`~hybrid_asd.monitor.plot`: the time series of windowed scores (``hybrid-asd report``).

Names are resolved on first use: ``system`` loads torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_system": "system",
    "System": "system",
    "decision_thresholds": "system",
    "ClipScore": "records",
    "MemberScore": "records",
    "Scores": "records",
    "read_records": "records",
    "run_predict": "predict",
    "export_system": "export",
    "plot_series": "plot",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"hybrid_asd.monitor.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'hybrid_asd.monitor' has no attribute {name!r}")
