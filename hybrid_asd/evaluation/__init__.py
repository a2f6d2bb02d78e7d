"""Evaluation: official metrics and result tables, submission files, decision thresholds.

- ``metrics``: AUC/pAUC, harmonic means and ``evaluate_scores`` (protocols dcase2021, dcase2022)
  giving ``Results`` with the official CSV layout.
- ``submission``: write and read ``anomaly_score_*`` / ``decision_result_*`` files.
- ``official``: evaluate submission folders against ground truth (``evaluate_folder``).
- ``thresholds``: gamma-fit decision thresholds per section.

Submodules are imported on use (``from hybrid_asd.evaluation.metrics import evaluate_scores``).
"""
