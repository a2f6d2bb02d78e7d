"""The ``detectors`` config section: a list of detector entries.

``conf`` goes to the detector's ``__init__`` (see :mod:`hybrid_asd.detectors.registry`) and is
checked there at load time (unknown keys, bad values); ``adaptation`` goes to
:class:`~hybrid_asd.detectors.adapt.DomainAdaptiveDetector`, whose defaults are these.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, Strict, ValidationInfo, field_validator, model_validator

from hybrid_asd.detectors.registry import DETECTORS, build_detector
from hybrid_asd.settings import Bool, NonNegativeInt, Section

INPUT_KINDS = ("embedding", "logmel_stats", "logmel_frames")
MODES = ("none", "pooled", "domain_min", "mean_shift")
NORMALISE = ("auto", "none", "oof", "train")
# Score tables written by other stages: the extractor's OE scores and the ensemble's fused ones.
RESERVED_IDS = ("oe", "fused")


class AdaptationSettings(Section):
    """Few-shot target-domain adaptation (see :mod:`hybrid_asd.detectors.adapt`)."""

    # mean_shift: one source model, moved onto the target clips' mean
    mode: Literal[MODES] = "domain_min"  # type: ignore[valid-type]
    smote: NonNegativeInt = 0  # extra interpolated target points for the target model (domain_min)
    normalise: Literal[NORMALISE] = "auto"  # type: ignore[valid-type]  # auto: none for knn, oof otherwise
    n_splits: Annotated[int, Strict(), Field(ge=2)] = 3  # folds of the out-of-fold ("oof") normalisation statistics


class DetectorEntry(Section):
    # registry name; the schema's list is read when the schema is made (after registration)
    name: str = Field(json_schema_extra=lambda schema: schema.update(enum=DETECTORS.names()))
    id: str = Field("", pattern=r"^[A-Za-z0-9_.-]*$")  # unique id used for file names; defaults to name
    input: Literal[INPUT_KINDS] = "embedding"  # type: ignore[valid-type]
    conf: dict[str, Any] = Field(default_factory=dict)  # passed to the detector's __init__
    adaptation: AdaptationSettings = Field(default_factory=AdaptationSettings)
    per_section: Bool = True  # false: one model for all sections, conditioned on the section (conditional flow)
    cross_fit_splits: NonNegativeInt = 3  # folds for out-of-fold train-clip scores (z-norm statistics); < 2: in-sample
    # per-feature standardisation of the input, fitted on the training rows and saved with the detector;
    # null = auto: on for logmel_stats (features on very different scales), off otherwise
    standardise: Bool | None = None

    @property
    def standardise_input(self) -> bool:
        """Whether the input is standardised (``standardise``, or its automatic choice)."""
        return self.input == "logmel_stats" if self.standardise is None else bool(self.standardise)

    @model_validator(mode="before")
    @classmethod
    def _id_defaults_to_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("id") and isinstance(data.get("name"), str):
            data = {**data, "id": data["name"]}
        return data

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        DETECTORS.get(name)  # ConfigError naming the known detectors
        return name

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_IDS:
            raise ValueError(f"{value!r} names another stage's score table; choose another id")
        return value

    @field_validator("conf")
    @classmethod
    def _conf_fits_detector(cls, conf: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "name" in info.data:  # else the name itself was wrong, and reported
            build_detector(info.data["name"], conf)  # unknown keys and bad values raise ConfigError
        return conf
