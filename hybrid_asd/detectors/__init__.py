"""Inlier detectors (kNN, GMM, Mahalanobis, normalizing flow, AE, IDNN) and domain adaptation.

Every detector follows :class:`~hybrid_asd.detectors.base.Detector`: ``fit(X, condition=None)``
returns self, ``decision_function(X, condition=None)`` gives one score per row, higher = more
anomalous (PyOD's name and sign; ``score_samples`` is a deprecated alias). Build one by name with
:func:`build_detector`; wrap it with :class:`DomainAdaptiveDetector` for source/target models;
reload any saved one with :func:`load_detector`.
"""

from hybrid_asd.detectors.base import Detector, NotFittedError, TrainingError
from hybrid_asd.detectors.persistence import load_detector
from hybrid_asd.detectors.registry import DETECTORS, build_detector

# Importing the modules registers the built-in detectors.
from hybrid_asd.detectors.knn import KNNDetector
from hybrid_asd.detectors.gmm import GMMDetector
from hybrid_asd.detectors.mahalanobis import MahalanobisDetector
from hybrid_asd.detectors.flow import FlowDetector
from hybrid_asd.detectors.autoencoder import AEDetector, IDNNDetector
from hybrid_asd.detectors.adapt import DomainAdaptiveDetector, cross_fit_scores, smote_interpolate

__all__ = [
    "DETECTORS",
    "AEDetector",
    "Detector",
    "DomainAdaptiveDetector",
    "FlowDetector",
    "GMMDetector",
    "IDNNDetector",
    "KNNDetector",
    "MahalanobisDetector",
    "NotFittedError",
    "TrainingError",
    "build_detector",
    "cross_fit_scores",
    "load_detector",
    "smote_interpolate",
]
