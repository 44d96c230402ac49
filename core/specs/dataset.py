"""`dataset`: which data to train on and how to prepare it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from core import datasets
from core.specs.augment import AugmentSpec
from models.strict import StrictModel


class DatasetSpec(StrictModel):
    name: str = Field(
        description="a built-in dataset: digits, spirals, moons, blobs, sine or zones"
    )
    val_fraction: float = Field(
        0.1, ge=0.0, le=0.5, description="share of the training split held out for validation"
    )
    normalize: Literal["standardize", "minmax", "none"] = Field(
        "standardize",
        description="standardize: (x - mean) / std; minmax: (x - min) / (max - min), so the "
        "training inputs lie in [0, 1]. Per feature, from the training split only, and "
        "applied unchanged to validation and test; a constant feature maps to 0",
    )
    augment: list[AugmentSpec] = Field(
        default_factory=list, max_length=16,
        description="augmentations applied in order to every training batch on the device, "
        "never to validation or test; empty: none",
    )
    n_samples: int | None = Field(None, ge=20, le=1_000_000, description="synthetic sets only")
    noise: float | None = Field(None, ge=0.0, le=10.0, description="synthetic sets only")
    classes: int | None = Field(None, ge=2, le=100, description="spirals and blobs only")
    seed: int = Field(
        0, ge=0, le=2**31 - 1,
        description="generation and validation-split seed; the test split is fixed",
    )

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in datasets.BUILTINS:
            known = ", ".join(sorted(datasets.BUILTINS))
            raise ValueError(f"unknown dataset {value!r}; the built-in datasets are: {known}")
        return value

    @model_validator(mode="after")
    def _options_apply(self) -> DatasetSpec:
        tunable = datasets.BUILTINS[self.name].tunable
        for option in ("n_samples", "noise", "classes"):
            if getattr(self, option) is not None and option not in tunable:
                raise ValueError(f"{self.name} takes no {option}; remove it")
        return self

    def options(self) -> datasets.Options:
        return datasets.Options(self.n_samples, self.noise, self.classes, self.seed)
