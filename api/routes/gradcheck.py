"""/v1/gradcheck: autograd against numerical gradients on a small batch, synchronously.

The check itself lives in models/gradcheck.py; the job preflight (`"gradcheck": true`) runs
the same check in the worker for networks too big to check here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from api.deps import DatasetLookupDep, SettingsDep
from api.routes.jobs import SpecBody
from api.schemas import NOT_JSON, ValidationErrorOut
from core import datasets
from core.jobspec import DatasetLookup, JobSpec, validate_job
from core.settings import Settings
from models.build import ModelSummary, SpecError, build_model
from models.gradcheck import MAX_COORDINATES, check_gradients
from models.losses import build_loss

# Above these the check would hold a request thread for too long, or take too much of the
# API's memory; the preflight (in the worker's bounded training child) has no such limit.
MAX_PARAMS = 200_000
# float64 multiply-adds of all the forwards the check runs (one thread: about 10 s)
MAX_WORK_FLOPS = 10_000_000_000
# float64 activations of one forward over the batch, kept for the backward
MAX_ACTIVATION_BYTES = 256 * 1024 * 1024
DEFAULT_BATCH = 8
MAX_BATCH = 64

router = APIRouter(
    prefix="/v1/gradcheck", tags=["gradcheck"],
    responses={422: {"model": ValidationErrorOut, "description": "the field to change"}},
)


class TensorCheckOut(BaseModel):
    name: str
    shape: list[int]
    coordinates: int
    relative_error: float
    verdict: str


class GradcheckOut(BaseModel):
    verdict: str
    tensors: list[TensorCheckOut]
    notes: list[str]
    batch_size: int
    eps: float


@router.post("", response_model=GradcheckOut, responses=NOT_JSON)
async def gradcheck(
    spec: SpecBody,
    settings: SettingsDep,
    lookup: DatasetLookupDep,
    batch_size: Annotated[int, Query(ge=2, le=MAX_BATCH,
                                     description="training samples to check on")] = DEFAULT_BATCH,
) -> GradcheckOut:
    """Build the network as a job would (seeded with training.seed) and compare autograd's
    gradients with central differences in float64 on the first `batch_size` samples of the
    training split, with the spec's `gradcheck_eps` as the step. Verdicts: correct < 1e-7 ≤
    worth a look < 1e-5 ≤ suspect < 1e-3 ≤ wrong."""
    report = await run_in_threadpool(_check, spec, settings, lookup, batch_size)
    return GradcheckOut.model_validate(report)


def _check(spec: JobSpec, settings: Settings, lookup: DatasetLookup, batch_size: int) -> dict:
    checked = validate_job(spec, settings, lookup)
    spec = checked.spec  # an uploaded dataset's version resolved
    params = checked.model.total_params
    if params > MAX_PARAMS:
        raise SpecError(
            "model",
            f"the network has {params:,} parameters; POST /v1/gradcheck checks at most "
            f"{MAX_PARAMS:,} while you wait: submit the job with \"gradcheck\": true to run the "
            "check in the worker before training instead",
        )
    _check_cost(checked.model, batch_size)
    x, y = _batch(spec, checked.dataset.task, batch_size, settings.dataset_dir)
    with torch.random.fork_rng(devices=[]):  # the API process's RNG is not the job's
        torch.manual_seed(spec.training.seed)
        model, _ = build_model(spec.model, checked.dataset.input_shape)
    report = check_gradients(model, build_loss(spec.loss), x, y, eps=spec.gradcheck_eps,
                             seed=spec.training.seed)
    return report.as_dict()


def _check_cost(model: ModelSummary, batch_size: int) -> None:
    """Refuse, from the network's summary and before anything is built, a check whose
    activations or forwards would cost more than the API gives it."""
    activations = math.prod(model.input_shape) + sum(
        math.prod(layer.output_shape) for layer in model.layers)
    memory = activations * batch_size * 8
    # one forward for autograd, then two per perturbed coordinate (weight and bias of each
    # layer: at most MAX_COORDINATES each)
    forwards = 1 + 2 * sum(min(layer.params, 2 * MAX_COORDINATES) for layer in model.layers)
    work = forwards * batch_size * max(1, sum(layer.flops for layer in model.layers))
    advice = ("use a smaller batch_size, or submit the job with \"gradcheck\": true to run the "
              "check in the worker before training instead")
    if memory > MAX_ACTIVATION_BYTES:
        raise SpecError("model", f"the check needs {memory / 2**20:,.0f} MiB of float64 "
                        f"activations for {batch_size} samples; POST /v1/gradcheck allows "
                        f"{MAX_ACTIVATION_BYTES // 2**20} MiB: {advice}")
    if work > MAX_WORK_FLOPS:
        raise SpecError("model", f"the check needs about {work:.2g} floating-point operations "
                        f"({forwards:,} forwards of {batch_size} samples); POST /v1/gradcheck "
                        f"allows {MAX_WORK_FLOPS:.2g}: {advice}")


def _batch(spec: JobSpec, task: str, batch_size: int, root: Path
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first samples of the job's training split (validation and test held out as the
    worker does; an uploaded dataset's rows read from its memory-mapped arrays), normalised as
    dataset.normalize says but with the batch's own statistics: the check needs inputs on
    the training scale, not the split's exact statistics."""
    ds = spec.dataset
    stored = datasets.source_arrays(ds.name, ds.options(), ds.sha256, root)
    arrays = datasets.job_arrays(stored, task, ds.val_fraction, ds.seed, ds.n_train)
    rows = np.arange(len(arrays.x_train)) if arrays.train_rows is None else arrays.train_rows
    chosen = rows[:batch_size]
    x = torch.from_numpy(np.ascontiguousarray(arrays.x_train[chosen])).to(torch.float64)
    y = torch.from_numpy(np.ascontiguousarray(arrays.y_train[chosen]))
    if spec.dataset.normalize == "minmax":
        low = x.amin(dim=0)
        x = (x - low) / _nonzero(x.amax(dim=0) - low)
    elif spec.dataset.normalize != "none":
        x = (x - x.mean(dim=0)) / _nonzero(x.std(dim=0, unbiased=False))
    return x, y


def _nonzero(scale: torch.Tensor) -> torch.Tensor:
    """A constant feature (a digit's blank border) maps to zero rather than to NaN."""
    return torch.where(scale < 1e-6, torch.ones_like(scale), scale)
