"""hybrid_asd: unsupervised anomalous sound detection under domain shift.

Stages (one module each): ``data`` -> ``features`` -> ``extractor`` -> ``detectors``
-> ``ensemble`` -> ``evaluation``. Score sign everywhere: higher = more anomalous.
"""

__version__ = "0.1.0"
