"""Defaults of the ``detectors`` config section: a list of detector entries."""

DETECTOR_DEFAULTS: list = []

DETECTOR_ENTRY_DEFAULTS = {
    "name": None,  # registry name: knn, gmm, mahalanobis, flow, ae, idnn
    "id": None,  # unique id used for file names; defaults to name
    "input": "embedding",  # embedding | logmel_stats | logmel_frames
    "conf": {},  # passed to the detector's __init__
    "adaptation": {"mode": "domain_min", "smote": 0},  # none | pooled | domain_min
    "per_section": True,  # false: one model for all sections, conditioned on the section (conditional flow)
    "cross_fit_splits": 3,  # folds for out-of-fold train-clip scores (z-norm statistics); <2: in-sample
}
