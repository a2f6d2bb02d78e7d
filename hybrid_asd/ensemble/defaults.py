"""Defaults of the ``ensemble`` config section."""

ENSEMBLE_DEFAULTS = {
    "members": None,  # detector ids to fuse; null = every score table of the experiment
    "normalise": "znorm",  # znorm | none
    "per_domain": False,  # z-normalisation statistics per domain as well as per section
    "min_clips": 10,  # per_domain: groups with fewer train clips shrink their std towards the section's
    "rule": "weighted_sum",  # weighted_sum | max | min | rank_mean
    "weights": {},  # detector id -> weight, or machine -> {detector id -> weight}; missing ids get 1.0
}

# Weight search of ``hybrid-asd fuse --tune`` (hybrid_asd.ensemble.tune.tune_weights).
TUNE_DEFAULTS = {
    "method": "auto",  # auto (grid up to MAX_GRID_DETECTORS detectors, else optimiser) | grid | optimiser
    "grid_step": 0.1,  # simplex grid resolution; 1 / grid_step must be an integer
    "per_machine": False,  # one weight set per machine type instead of a shared one
    "loso": True,  # leave-one-section-out estimates
    "maxiter": 30,  # differential evolution generations (optimiser only)
    "popsize": 6,  # differential evolution population = popsize x number of detectors
}
MAX_GRID_DETECTORS = 4
