"""Request dependencies: settings, a database session, the publisher, and `valid_job` (404)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from core.queue import Publisher
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
