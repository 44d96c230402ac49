"""A job's checkpoint as a Bundle: which checkpoint ("best", "last" or a step), its file, the
dataset the job trained on, and the metrics at that step.

Split in two so that the database work and the torch work can run in different processes:
`locate` reads rows (cheap, in the request) and returns a plain `Located`; `load_located`
reads the file and builds the network (seconds, in a bounded process or a thread). The owner
check is the caller's: `locate` takes a job it was allowed to see.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.orm import Session

from core import dataset_store, datasets
from core.best_checkpoint import best_checkpoint
from core.repo import checkpoints as checkpoint_repo
from core.repo import datasets as dataset_repo
from core.specs.dataset import DatasetSpec
from core.tables import Checkpoint, Job
from inference.bundle import Bundle, load_bundle

CHOICES = ("best", "last")


class BundleError(Exception):
    """Why a job's checkpoint cannot be loaded. `field` is the request field to change (or
    None), `status` the HTTP status the API answers with."""

    status = 409

    def __init__(self, message: str, field: str | None = "checkpoint") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NoCheckpoint(BundleError):
    """The job has written no checkpoint yet (queued, or running its first epoch)."""

    status = 409


class UnknownCheckpoint(BundleError):
    """A step that names no checkpoint of the job."""

    status = 404


class FileGone(BundleError):
    """A row whose file, or a dataset whose folder, is no longer on disk."""

    status = 410


@dataclass(frozen=True)
class Located:
    """What `load_located` needs, as plain values (it may run in another process)."""

    job_id: str
    checkpoint_id: int
    path: str
    sha256: str
    step: int
    metrics: dict[str, Any]
    info: datasets.DatasetInfo

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "info": asdict(self.info)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Located:
        info = dict(data["info"])
        for key in ("input_shape", "target_shape", "class_names", "feature_names"):
            if info.get(key) is not None:
                info[key] = tuple(info[key])
        known = datasets.DatasetInfo.__dataclass_fields__
        return cls(**{**data, "info": datasets.DatasetInfo(
            **{k: v for k, v in info.items() if k in known})})


def parse_choice(value: str | int) -> str | int:
    """"best", "last" or a step number (an int or a string of digits); ValueError otherwise,
    with a message that names the field."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in CHOICES:
            return text
        if text.isdigit():
            return int(text)
    raise ValueError(f"checkpoint must be 'best', 'last' or a step number (a checkpoint's "
                     f"`step` in GET /v1/jobs/{{id}}/checkpoints), not {value!r}")


def pick_checkpoint(session: Session, job: Job, choice: str | int) -> Checkpoint:
    """The row `choice` names. "best" is the one with the best monitored metric, as the
    checkpoint list marks it, or the last when no checkpoint recorded that metric."""
    rows = checkpoint_repo.list_checkpoints(session, job.id)
    if not rows:
        every = ("every training.checkpoint_every_epochs epochs and at the end"
                 if (job.spec.get("training") or {}).get("checkpoint_every_epochs", 1)
                 else "at the end: training.checkpoint_every_epochs is 0")
        if job.state in ("queued", "running"):
            raise NoCheckpoint(f"job {job.id} is {job.state} and has no checkpoint yet; wait "
                               f"for its first one (written {every}), or for the job to "
                               "succeed")
        raise NoCheckpoint(f"job {job.id} ended ({job.state}) without a checkpoint; submit "
                           "it again to have one")
    if choice == "last":
        return rows[-1]
    if choice == "best":
        return best_checkpoint(rows, job.spec) or rows[-1]
    for row in rows:
        if row.step == choice:
            return row
    steps = ", ".join(str(r.step) for r in rows)
    raise UnknownCheckpoint(f"job {job.id} has no checkpoint at step {choice}; its checkpoints "
                            f"are at steps {steps} (or ask for 'best' or 'last')")


def dataset_info(session: Session, spec: dict[str, Any], dataset_dir: Path
                 ) -> datasets.DatasetInfo:
    """The description of the dataset the job trained on: a built-in one from its options; an
    uploaded one from its row while the row still holds the version trained on, else from
    that version's folder."""
    ds = DatasetSpec.model_validate(spec["dataset"])
    if ds.is_builtin:
        return datasets.describe(ds.name, ds.options())
    row = dataset_repo.get(session, ds.id) if ds.id is not None else None
    if row is not None and row.sha256 == ds.sha256:
        return datasets.describe_stored(
            {c.name: getattr(row, c.name) for c in row.__table__.columns})
    try:
        meta = dataset_store.read_meta(dataset_dir, ds.sha256 or "")
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise FileGone(f"the dataset the job trained on ({ds.name}, version {ds.sha256}) is "
                       "no longer stored, and with it the input shape and names",
                       field=None) from exc
    return datasets.describe_stored({**meta, "sha256": ds.sha256, "name": ds.name})


def locate(session: Session, job: Job, choice: str | int, checkpoint_dir: Path,
           dataset_dir: Path) -> Located:
    row = pick_checkpoint(session, job, choice)
    path = Path(row.path).resolve()
    if not path.is_relative_to(checkpoint_dir.resolve()) or not path.is_file():
        raise FileGone(f"checkpoint at step {row.step}'s file is no longer on disk; ask for "
                       "another checkpoint")
    return Located(
        job_id=str(job.id), checkpoint_id=row.id, path=str(path), sha256=row.sha256,
        step=row.step, metrics=dict(row.metrics or {}),
        info=dataset_info(session, job.spec, dataset_dir),
    )


def load_located(located: Located) -> Bundle:
    payload = torch.load(located.path, map_location="cpu", weights_only=True)
    return load_bundle(payload, located.info, located.metrics)


def job_bundle(session: Session, job_id: uuid.UUID | str, choice: str | int, checkpoint_dir: Path,
               dataset_dir: Path) -> Bundle:
    """The bundle of job `job_id`'s checkpoint `choice` ("best", "last" or a step)."""
    job = session.get(Job, uuid.UUID(str(job_id)))
    if job is None:
        raise UnknownCheckpoint(f"no job {job_id}", field=None)
    return load_located(locate(session, job, parse_choice(choice), checkpoint_dir, dataset_dir))


__all__ = ["BundleError", "FileGone", "Located", "NoCheckpoint", "UnknownCheckpoint",
           "dataset_info", "job_bundle", "load_located", "locate", "parse_choice",
           "pick_checkpoint"]
