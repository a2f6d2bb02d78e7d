"""Defaults of the ``detectors`` config section: a list of detector entries.

``conf`` goes to the detector's ``__init__`` (see ``hybrid_asd.detectors.registry``);
``adaptation`` goes to ``hybrid_asd.detectors.adapt.DomainAdaptiveDetector``.
"""

DETECTOR_DEFAULTS: list = []

DETECTOR_ENTRY_DEFAULTS = {
    "name": None,  # registry name: knn, gmm, mahalanobis, flow, ae, idnn
    "id": None,  # unique id used for file names; defaults to name
    "input": "embedding",  # embedding | logmel_stats | logmel_frames
    "conf": {},  # passed to the detector's __init__
    "adaptation": {
        "mode": "domain_min",  # none | pooled | domain_min | mean_shift (source model moved onto the target mean)
        "smote": 0,  # extra interpolated target points for the target model (domain_min)
        "normalise": "auto",  # auto (none for knn, oof otherwise) | none | oof | train
        "n_splits": 3,  # folds of the out-of-fold ("oof") normalisation statistics
    },
    "per_section": True,  # false: one model for all sections, conditioned on the section (conditional flow)
    "cross_fit_splits": 3,  # folds for out-of-fold train-clip scores (z-norm statistics); < 2: in-sample
}
