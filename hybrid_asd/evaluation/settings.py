"""The ``evaluation`` config section: protocol, pAUC range and decision thresholds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hybrid_asd.settings import Float, Section

# dcase2021: AUC and pAUC per section and domain; dcase2022: per-domain AUC, pAUC over both
# domains per section; dcase2025 (DCASE 2025 and 2026): dcase2022's numbers plus per-domain pAUC and
# the official baseline's summary (see hybrid_asd.evaluation.metrics and .dcase2025).
PROTOCOLS = ("dcase2021", "dcase2022", "dcase2025")
SECTION_PAUC_PROTOCOLS = ("dcase2022", "dcase2025")  # one pAUC per section, over both domains


class EvaluationSettings(Section):
    protocol: Literal[PROTOCOLS] = "dcase2021"  # type: ignore[valid-type]
    max_fpr: Annotated[Float, Field(gt=0, le=1)] = 0.1  # pAUC: roc_auc_score(..., max_fpr)
    # decision threshold: this quantile of a gamma distribution fitted to the normal train scores
    threshold_quantile: Annotated[Float, Field(gt=0, lt=1)] = 0.9


# Methods of the report's embedding map (``hybrid-asd report --embedding``).
EMBEDDING_METHODS = ("pca", "tsne", "umap")
