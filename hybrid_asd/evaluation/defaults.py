"""Defaults of the ``evaluation`` config section."""

EVALUATION_DEFAULTS = {
    "protocol": "dcase2021",  # dcase2021 | dcase2022
    "max_fpr": 0.1,
    "threshold_quantile": 0.9,  # decision threshold: this quantile of a gamma fit to normal train scores
}
