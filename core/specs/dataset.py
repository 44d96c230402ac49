"""`dataset`: which data to train on and how to prepare it."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field, model_validator

from core import datasets
from core.specs.augment import AugmentSpec
from models.strict import StrictModel

BUILTIN_OPTIONS = ("n_samples", "noise", "classes")


class DatasetSpec(StrictModel):
    name: str | None = Field(
        None, min_length=1, max_length=200,
        description="a built-in dataset (digits, spirals, moons, blobs, sine or zones) or the "
        "name of an uploaded one (GET /v1/datasets lists both); give name or id",
    )
    id: uuid.UUID | None = Field(
        None,
        description="the id of an uploaded dataset, as POST /v1/datasets returned it; give "
        "name or id. The server fills it in for an uploaded dataset named by name",
    )
    sha256: str | None = Field(
        None, pattern="^[0-9a-f]{64}$",
        description="the version of an uploaded dataset the job trains on, filled in by the "
        "server when the job is created; given, it must match the dataset's (a check that the "
        "data is the one you mean). Built-in datasets have none",
    )
    val_fraction: float = Field(
        0.1, ge=0.0, le=0.5,
        description="share of the training split held out for validation; an uploaded "
        "dataset's own validation split, when it has one, is used instead",
    )
    n_train: int | None = Field(
        None, ge=1, le=100_000_000,
        description="train on this many samples of the training split, drawn with "
        "dataset.seed (each class keeps its share) after the test and validation splits are "
        "held out, which keep their full size, and before the normalisation statistics are "
        "computed; at most the split's size. null: the whole split. For lessons on "
        "over-fitting and on data size, with any dataset, built-in or uploaded",
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
    n_samples: int | None = Field(
        None, ge=20, le=1_000_000, description="synthetic built-in sets only"
    )
    noise: float | None = Field(None, ge=0.0, le=10.0, description="synthetic built-in sets only")
    classes: int | None = Field(None, ge=2, le=100, description="spirals and blobs only")
    seed: int = Field(
        0, ge=0, le=2**31 - 1,
        description="generation and validation-split seed; the test split is fixed",
    )

    @model_validator(mode="after")
    def _options_apply(self) -> DatasetSpec:
        """Whether a name is an uploaded dataset only the database knows (core/jobspec.py
        resolves it); a built-in one, and the options it takes, are known here."""
        if self.name is None and self.id is None:
            raise ValueError(
                "give dataset.name (a built-in or uploaded dataset) or dataset.id (an uploaded "
                "one); GET /v1/datasets lists them"
            )
        given = [option for option in BUILTIN_OPTIONS if getattr(self, option) is not None]
        if not self.is_builtin:
            if given:
                raise ValueError(
                    f"{given[0]} applies to built-in datasets only, not to an uploaded one; "
                    f"remove it"
                )
            return self
        if self.id is not None or self.sha256 is not None:  # uploaded names are never built-in
            extra = "id" if self.id is not None else "sha256"
            raise ValueError(
                f"{self.name} is a built-in dataset, which has no {extra}; remove dataset.{extra}"
            )
        tunable = datasets.BUILTINS[self.name].tunable
        for option in given:
            if option not in tunable:
                raise ValueError(f"{self.name} takes no {option}; remove it")
        return self

    @property
    def is_builtin(self) -> bool:
        return self.name in datasets.BUILTINS

    @property
    def label(self) -> str:
        """How messages and default job names call the dataset."""
        return self.name or str(self.id)

    def options(self) -> datasets.Options:
        return datasets.Options(self.n_samples, self.noise, self.classes, self.seed)
