"""Defaults of the ``ensemble`` config section."""

ENSEMBLE_DEFAULTS = {
    "members": None,  # detector ids to fuse; null = every score table of the experiment
    "normalise": "znorm",  # znorm | none
    "per_domain": False,  # z-normalisation statistics per domain as well as per section
    "rule": "weighted_sum",  # weighted_sum | max | min | rank_mean
    "weights": {},  # detector id -> weight; missing ids get 1.0
}
