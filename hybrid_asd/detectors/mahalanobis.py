"""Mahalanobis distance to the normal data with a Ledoit-Wolf shrinkage covariance."""

from __future__ import annotations

from typing import Any

import numpy as np

from hybrid_asd.detectors.base import Detector
from hybrid_asd.detectors.registry import register


@register
class MahalanobisDetector(Detector):
    """Score = **squared** Mahalanobis distance ``(x - mu)^T P (x - mu)`` (higher = more anomalous).

    ``mu`` is the training mean and ``P`` the inverse of scikit-learn's ``LedoitWolf`` shrinkage
    covariance, which stays well conditioned with few rows or many dimensions (e.g. a
    128-d embedding of 3 target clips). The squared distance equals ``-2 log N(x; mu, C)`` up
    to a constant, so it ranks rows exactly like the Gaussian negative log-likelihood;
    ``squared=False`` returns its square root (same ranking).
    """

    name = "mahalanobis"

    def __init__(self, squared: bool = True):
        self.squared = squared

    def _validate_params(self) -> None:
        if not isinstance(self.squared, bool):
            raise self._bad_param("squared", self.squared, "true or false")

    def _fit(self, X: np.ndarray, condition: np.ndarray | None) -> None:
        X = X.astype(np.float64, copy=False)
        # lazy: scikit-learn takes a second to import; the registry must stay light
        from sklearn.covariance import LedoitWolf
        model = LedoitWolf(store_precision=True, assume_centered=False).fit(X)
        self.location_ = model.location_
        self.precision_ = model.precision_
        self.shrinkage_ = float(model.shrinkage_)

    def _score(self, X: np.ndarray, condition: np.ndarray | None) -> np.ndarray:
        X = X.astype(np.float64, copy=False)
        centred = X - self.location_
        d2 = np.einsum("ij,jk,ik->i", centred, self.precision_, centred)
        d2 = np.maximum(d2, 0.0)  # tiny negative values from rounding
        return d2 if self.squared else np.sqrt(d2)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"shrinkage_": self.shrinkage_}, {"location": self.location_, "precision": self.precision_}

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.shrinkage_ = float(state["shrinkage_"])
        self.location_ = arrays["location"]
        self.precision_ = arrays["precision"]
