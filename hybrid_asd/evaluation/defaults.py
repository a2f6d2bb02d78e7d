"""Defaults of the ``evaluation`` config section."""

EVALUATION_DEFAULTS = {
    "protocol": "dcase2021",  # dcase2021 (per-domain AUC/pAUC) | dcase2022 (see evaluation.metrics)
    "max_fpr": 0.1,  # pAUC: roc_auc_score(..., max_fpr)
    "threshold_quantile": 0.9,  # decision threshold: this quantile of a gamma fit to normal train scores
}
