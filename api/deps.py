"""Request dependencies: settings, a database session, the publisher, `valid_job` (404), and
the uploaded-dataset lookup that job validation resolves dataset names and ids with."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from core.jobspec import DatasetLookup
from core.queue import Publisher
from core.repo import datasets as dataset_repo
from core.repo import jobs as job_repo
from core.settings import Settings
from core.tables import Job


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


def get_publisher(request: Request) -> Publisher:
    return request.app.state.publisher


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_db)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]


def valid_job(job_id: uuid.UUID, session: SessionDep) -> Job:
    job = job_repo.get_job(session, job_id)
    if job is None:
        raise HTTPException(404, f"no job with id {job_id}")
    return job


JobDep = Annotated[Job, Depends(valid_job)]


def get_dataset_lookup(session: SessionDep) -> DatasetLookup:
    """Uploaded datasets by name (str) or id (UUID), described from their rows."""

    def lookup(key: str | uuid.UUID) -> Mapping[str, Any] | None:
        row = (dataset_repo.get(session, key) if isinstance(key, uuid.UUID)
               else dataset_repo.get_by_name(session, key))
        if row is None:
            return None
        return {"id": str(row.id), "name": row.name, "sha256": row.sha256, "task": row.task,
                "input_shape": row.input_shape, "target_shape": row.target_shape,
                "num_classes": row.num_classes, "class_names": row.class_names,
                "splits": row.splits}

    return lookup


DatasetLookupDep = Annotated[DatasetLookup, Depends(get_dataset_lookup)]
