"""Evaluation: official metrics and result tables, submission files, decision thresholds.

- ``metrics``: AUC/pAUC, harmonic means and ``evaluate_scores`` (protocols dcase2021, dcase2022, dcase2025)
  giving ``Results`` with the official CSV layout.
- ``dcase2025``: the DCASE 2025/2026 result table and summary as the official baseline computes them.
- ``submission``: write and read ``anomaly_score_*`` / ``decision_result_*`` files.
- ``official``: evaluate submission folders against ground truth (``evaluate_folder``).
- ``thresholds``: gamma-fit decision thresholds per section.

Submodules are imported on use (``from hybrid_asd.evaluation.metrics import evaluate_scores``).
"""
