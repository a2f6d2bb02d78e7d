"""hybrid_asd: unsupervised anomalous sound detection under domain shift.

Stages (one module each): ``data`` -> ``features`` -> ``extractor`` -> ``detectors``
-> ``ensemble`` -> ``evaluation``. Score sign everywhere: higher = more anomalous.

Scoring new recordings with a trained system: ``hybrid_asd.load_system(exp_dirs).score(paths)``
(see :mod:`hybrid_asd.monitor`; resolved on first use, as it loads torch).
"""

import importlib
from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "load_system":  # resolved on first use: it loads torch, and `import hybrid_asd` stays light
        return importlib.import_module("hybrid_asd.monitor.system").load_system
    raise AttributeError(f"module 'hybrid_asd' has no attribute {name!r}")
