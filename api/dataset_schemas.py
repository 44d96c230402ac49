"""Request and response bodies of /v1/datasets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core import datasets

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
Side = Annotated[int, Field(ge=1, le=4096)]


class UploadOptions(BaseModel):
    """What a multipart upload's text fields and a URL import's JSON share."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=200, pattern=NAME_PATTERN,
        description="how jobs name the dataset (dataset.name); unique, and not a built-in "
        "dataset's name. Letters, digits, '.', '_' and '-', starting with a letter or digit",
    )
    format: str | None = Field(
        None, max_length=32,
        description="npz, csv, idx (MNIST's files in a .zip or .tar.gz) or images (a .zip of "
        "class-named folders); by default told from the file name's suffix",
    )
    target: str | None = Field(
        None, min_length=1, max_length=200,
        description="csv only: the column that holds the target (default: the last column)",
    )
    task: Literal["classification", "regression"] | None = Field(
        None, description="default: classification for integer or text targets, regression "
        "for fractional ones",
    )
    image_size: Side | tuple[Side, Side] | None = Field(
        None,
        description="images only: resize every image to this many pixels square, or to "
        "[height, width] (a form field may say 32 or 32x48); default: keep the images' own "
        "size, which must then be the same for all",
    )
    color: Literal["grayscale", "rgb"] | None = Field(
        None, description="images only: 1 channel (grayscale) or 3 (rgb, the default)",
    )

    @field_validator("name")
    @classmethod
    def _not_an_id(cls, value: str) -> str:
        try:
            uuid.UUID(value)
        except ValueError:
            return value
        raise ValueError("looks like a dataset id; choose a name that is not a UUID")


class DatasetImport(UploadOptions):
    """POST /v1/datasets with a JSON body: fetch the file from a URL."""

    url: str = Field(
        max_length=2000,
        description="http:// or https:// URL of the file; its path's suffix tells the format "
        "unless `format` is given",
    )


class FeatureStats(BaseModel):
    features: int = Field(description="number of input features (the product of input_shape)")
    min: float | None = Field(description="smallest value in the training split")
    max: float | None = Field(description="largest value in the training split")
    mean: float | None = Field(description="mean over every training value")
    std: float | None = Field(description="standard deviation over every training value")
    per_feature: dict[str, list[float]] | None = Field(
        description="{mean: [...], std: [...]}, one number per feature, over the training "
        "split; only for inputs of at most 64 features, else null",
    )


class Splits(BaseModel):
    train: int = Field(description="training samples")
    val: int | None = Field(description="validation samples; null: jobs hold out val_fraction")
    test: int | None = Field(description="test samples; null: jobs hold out a fixed test split")


class UploadedDatasetOut(BaseModel):
    """An uploaded or imported dataset, as POST returns it and GET describes it."""

    id: uuid.UUID = Field(description="jobs may name it by dataset.id")
    name: str = Field(description="jobs may name it by dataset.name (names are each owner's)")
    owner: str = Field(description="whose dataset it is: the owner of the API key that "
                       "uploaded it")
    builtin: Literal[False] = Field(False, description="false: uploaded or imported")
    format: str = Field(description="the format it was parsed as")
    task: str = Field(description="classification or regression")
    input_shape: list[int] = Field(description="per-sample shape the first layer receives")
    target_shape: list[int] = Field(description="[] for class labels, [k] for k regression "
                                    "targets")
    num_classes: int | None = Field(description="classification only")
    class_names: list[str] | None = Field(
        description="the name of each class in label order (csv categories, image folders, "
        "an npz's class_names); null when the labels were integers and no names were given")
    feature_names: list[str] | None = Field(
        None, description="the name of each input feature in column order (a csv's header "
        "without the target, an npz's feature_names); null for images, unnamed arrays and "
        "datasets uploaded before names were kept")
    class_counts: dict[str, list[int]] | None = Field(
        description="samples per class, per split present; null for regression")
    splits: Splits
    feature_stats: FeatureStats
    sha256: str = Field(description="the version: a digest of the stored arrays; the same "
                        "content uploaded twice has the same sha256 and is stored once")
    bytes: int = Field(description="size of the stored arrays on disk")
    source: dict[str, Any] = Field(description="{filename} for an upload, {url} for an import")
    created_at: datetime


class BuiltinDatasetOut(BaseModel):
    """A dataset generated from a seed or shipped in a package (digits, spirals, ...)."""

    name: str
    builtin: Literal[True] = Field(True, description="true: built in, nothing to upload")
    task: str
    input_shape: list[int]
    num_classes: int | None
    class_names: list[str] | None = Field(
        description="each class's name in label order (\"0\"..\"k-1\" for digits and the "
        "generated sets; each label's for a multi-label set); null for regression")
    feature_names: list[str] | None = Field(
        description="each input feature's name (\"x\", or \"x0\", \"x1\", ...); null for "
        "images")
    target_shape: list[int]
    n_samples: int = Field(description="default number of samples")
    description: str
    options: list[str] = Field(description="which options the spec's dataset object may set")


def builtin_out(name: str) -> BuiltinDatasetOut:
    info = datasets.describe(name)
    return BuiltinDatasetOut(
        name=info.name, task=info.task, input_shape=list(info.input_shape),
        num_classes=info.num_classes, target_shape=list(info.target_shape),
        class_names=_listed(info.class_names), feature_names=_listed(info.feature_names),
        n_samples=info.n_samples, description=info.description,
        options=sorted(datasets.BUILTINS[name].tunable),
    )


def _listed(names: tuple[str, ...] | None) -> list[str] | None:
    return None if names is None else list(names)
