"""The ``ensemble`` config section (fusion of the experiment's score tables) and the weight search
of ``hybrid-asd fuse --tune``."""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping

from pydantic import Field, field_validator

from hybrid_asd.ensemble.fusion import NORMALISERS, RULES
from hybrid_asd.settings import Bool, NonNegativeInt, PositiveInt, Section

TUNE_METHODS = ("auto", "grid", "optimiser")


class EnsembleSettings(Section):
    members: list[str] | None = None  # detector ids to fuse; null = every score table of the experiment
    normalise: Literal[NORMALISERS] = "znorm"  # type: ignore[valid-type]
    per_domain: Bool = False  # z-normalisation statistics per domain as well as per section
    min_clips: NonNegativeInt = 10  # per_domain: groups with fewer train clips shrink their std towards the section's
    # weighted_sum | max | min | rank_mean; the schema's list is read when the schema is made
    rule: str = Field("weighted_sum", json_schema_extra=lambda schema: schema.update(enum=RULES.names()))
    # detector id -> weight, or machine type -> {detector id -> weight}; missing ids get 1.0
    weights: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra={"additionalProperties": {"anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}}]}},
    )

    @field_validator("rule")
    @classmethod
    def _registered(cls, rule: str) -> str:
        RULES.get(rule)  # ConfigError naming the known rules
        return rule

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, weights: Any) -> dict[str, Any]:
        if weights is None:
            return {}
        if not isinstance(weights, Mapping):
            raise ValueError("must be {detector: weight} or {machine: {detector: weight}}")
        nested = [isinstance(v, Mapping) for v in weights.values()]
        if any(nested) and not all(nested):
            raise ValueError("mixes {detector: weight} and {machine: {detector: weight}} entries; use one form")
        if any(nested):
            return {str(m): {str(d): _weight(w, f"{m}.{d}") for d, w in ws.items()} for m, ws in weights.items()}
        return {str(d): _weight(w, str(d)) for d, w in weights.items()}


def _weight(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"weight of {key} is {value!r}; weights are finite numbers >= 0")
    return float(value)


class TuneSettings(Section):
    """The weight search of ``hybrid-asd fuse --tune`` (:func:`hybrid_asd.ensemble.tune.tune_weights`)."""

    method: Literal[TUNE_METHODS] = "auto"  # type: ignore[valid-type]  # auto: grid up to 4 detectors, else optimiser
    grid_step: float = Field(0.1, gt=0, le=1)  # simplex grid resolution; 1 / grid_step must be an integer
    per_machine: Bool = False  # one weight set per machine type instead of a shared one
    loso: Bool = True  # leave-one-section-out estimates
    maxiter: PositiveInt = 30  # differential evolution generations (optimiser only)
    popsize: PositiveInt = 6  # differential evolution population = popsize x number of detectors
