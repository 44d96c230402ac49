"""Checking a JobSpec (core/specs/job.py) against what pydantic alone cannot see.

`validate_job` checks which dataset the spec names (an uploaded one is known only to the
database, asked through `lookup`), shapes (the network is built on the meta device against the
dataset's input shape), then the sections against each other and the server's limits
(core/checks.py). Every failure names the field path and says what to change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from core import checks, datasets, input_scales
from core.settings import Settings
from core.specs.dataset import DatasetSpec
from core.specs.job import JobSpec
from core.validated_job import ValidatedJob
from models.build import SpecError, summarize

__all__ = ["DatasetLookup", "JobSpec", "ValidatedJob", "resolve_dataset", "validate_job"]

# An uploaded dataset by name (str) or id (UUID) -> its description (meta.json's keys plus the
# row's id, name and sha256; see datasets.describe_stored), or None when there is none.
DatasetLookup = Callable[[str | uuid.UUID], Mapping[str, Any] | None]


def validate_job(spec: JobSpec, settings: Settings, lookup: DatasetLookup | None = None,
                 input_shape: tuple[int, ...] | None = None) -> ValidatedJob:
    """Check the dataset, shapes, loss and limits; raises SpecError naming the field to change.
    The returned job's spec names an uploaded dataset by name, id and sha256, so that the
    worker loads the version validated here without asking the database. `input_shape`
    builds the network for another input than the dataset's (POST /v1/jobs/validate's
    override: what a network's size does with the input's), and says so in a warning."""
    checks.limits(spec, settings)
    resolved, info = resolve_dataset(spec.dataset, lookup)
    spec = spec.model_copy(update={"dataset": resolved})
    summary = summarize(spec.model, input_shape or info.input_shape)
    if summary.total_params > settings.max_params:
        raise SpecError(
            "model",
            f"the network has {summary.total_params:,} parameters; this server allows at most "
            f"{settings.max_params:,}: use fewer or smaller layers",
        )
    checks.output(spec, info, summary)
    checked = ValidatedJob(spec, info, summary)
    checks.subsample(checked)
    checks.schedule(checked)
    checks.training(checked)
    checks.augment(checked)
    checks.memory(checked, settings)
    checks.notify(spec, settings)
    unscaled = input_scales.unnormalized_inputs(spec.dataset, info, lookup)
    checked.named_warnings = [unscaled] if unscaled is not None else []
    checked.warnings = [*checks.warnings(checked), *(w.message for w in checked.named_warnings)]
    if input_shape is not None and tuple(input_shape) != info.input_shape:
        checked.warnings.append(
            f"input_shape: the network was built for inputs of shape {tuple(input_shape)} as "
            f"asked, not for the {info.input_shape} of {info.name}; a job trains on the "
            "dataset's"
        )
    return checked


def resolve_dataset(spec: DatasetSpec, lookup: DatasetLookup | None
                    ) -> tuple[DatasetSpec, datasets.DatasetInfo]:
    """The dataset a spec names, and the spec with an uploaded dataset's name, id and sha256
    filled in. Without a lookup only built-in datasets are known."""
    if spec.is_builtin:
        return spec, datasets.describe(spec.name, spec.options())
    by_id = spec.id is not None
    found = lookup(spec.id if by_id else spec.name) if lookup is not None else None
    if found is None:
        if by_id:
            raise SpecError(
                "dataset.id",
                f"no uploaded dataset has id {spec.id}; GET /v1/datasets lists the datasets "
                "and their ids",
            )
        known = ", ".join(sorted(datasets.BUILTINS))
        raise SpecError(
            "dataset.name",
            f"unknown dataset {spec.name!r}; the built-in datasets are: {known}; GET "
            "/v1/datasets lists the uploaded ones too (POST /v1/datasets uploads one)",
        )
    if by_id and spec.name is not None and spec.name != found["name"]:
        raise SpecError(
            "dataset.name",
            f"dataset.id {spec.id} is the dataset named {found['name']!r}, not {spec.name!r}: "
            "give only one of the two",
        )
    if spec.sha256 is not None and spec.sha256 != found["sha256"]:
        raise SpecError(
            "dataset.sha256",
            f"{found['name']!r} is version {found['sha256']}, not {spec.sha256}: remove "
            "dataset.sha256 to train on the dataset as it is, or name the dataset that holds "
            "that version",
        )
    resolved = spec.model_copy(update={
        "name": found["name"], "id": uuid.UUID(str(found["id"])), "sha256": found["sha256"],
    })
    return resolved, datasets.describe_stored(found)
