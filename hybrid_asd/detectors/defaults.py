"""Defaults of the ``detectors`` config section: a list of detector entries."""

DETECTOR_DEFAULTS: list = []

DETECTOR_ENTRY_DEFAULTS = {
    "name": None,  # registry name: knn, gmm, mahalanobis, flow, ae, idnn, oe ...
    "id": None,  # unique id used for file names; defaults to name
    "input": "embedding",  # embedding | logmel_stats | logmel_frames | oe
    "conf": {},  # passed to the detector's __init__
    "adaptation": {"mode": "domain_min", "smote": 0},  # none | pooled | domain_min
}
