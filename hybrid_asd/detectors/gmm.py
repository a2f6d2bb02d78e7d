"""Gaussian mixture model of the normal data (scikit-learn); score = negative log-likelihood."""

from __future__ import annotations

from typing import Any

import numpy as np

from hybrid_asd.detectors.base import Detector, warn
from hybrid_asd.detectors.registry import register

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@register
class GMMDetector(Detector):
    """``sklearn.mixture.GaussianMixture``; score = ``-score_samples`` (per-row negative log-likelihood).

    Defaults are scikit-learn's. With fewer training rows than ``n_components`` the number of
    components is reduced to the number of rows, with a warning (``n_components_`` is the one used).
    """

    name = "gmm"

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        seed: int = 0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.seed = seed

    def _validate_params(self) -> None:
        for key in ("n_components", "max_iter", "n_init"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise self._bad_param(key, value, "an int >= 1")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise self._bad_param("covariance_type", self.covariance_type, f"one of {COVARIANCE_TYPES}")
        if not (isinstance(self.reg_covar, (int, float)) and self.reg_covar >= 0):
            raise self._bad_param("reg_covar", self.reg_covar, "a float >= 0")

    def _new_model(self, n_components: int) -> Any:
        # lazy: scikit-learn takes a second to import; the registry must stay light
        from sklearn.mixture import GaussianMixture
        return GaussianMixture(
            n_components=n_components,
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            random_state=self.seed,
        )

    def _fit(self, X: np.ndarray, condition: np.ndarray | None) -> None:
        X = X.astype(np.float64, copy=False)
        n_components = self.n_components
        if n_components > len(X):
            warn(f"{self._who()}: n_components={n_components} > {len(X)} training rows; using {len(X)}")
            n_components = len(X)
        if len(X) == 1:
            # scikit-learn needs two rows; a single row (a target-domain model left with one clip in a
            # cross-fitting fold) becomes one Gaussian at that row with covariance reg_covar.
            warn(f"{self._who()}: one training row; the model is a Gaussian of covariance reg_covar around it")
            X = np.vstack([X, X])
        model = self._new_model(n_components).fit(X)
        if not model.converged_:
            warn(f"{self._who()}: EM did not converge in max_iter={self.max_iter} iterations")
        self.model_ = model
        self.n_components_ = n_components

    def _score(self, X: np.ndarray, condition: np.ndarray | None) -> np.ndarray:
        X = X.astype(np.float64, copy=False)
        return -self.model_.score_samples(X)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        m = self.model_
        arrays = {
            "weights": m.weights_,
            "means": m.means_,
            "covariances": m.covariances_,
            "precisions_cholesky": m.precisions_cholesky_,
        }
        return {"n_components_": self.n_components_}, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        # Rebuild the fitted estimator from its arrays (no pickle): these are the attributes
        # GaussianMixture.score_samples reads.
        self.n_components_ = int(state["n_components_"])
        model = self._new_model(self.n_components_)
        model.weights_ = arrays["weights"]
        model.means_ = arrays["means"]
        model.covariances_ = arrays["covariances"]
        model.precisions_cholesky_ = arrays["precisions_cholesky"]
        model.converged_ = True
        model.n_features_in_ = int(arrays["means"].shape[1])
        self.model_ = model
