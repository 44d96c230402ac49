"""Request dependencies: settings, a database session, the publisher, `valid_job` (404), and
the uploaded-dataset lookup that job validation resolves dataset names and ids with."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from api.auth import PrincipalDep
from api.connections import async_connection
from core.jobspec import DatasetLookup
from core.queue import BackgroundPublisher
from core.repo import datasets as dataset_repo
from core.repo import jobs as job_repo
from core.settings import Settings
from core.tables import Job


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_db(request: Request) -> AsyncIterator[Session]:
    # Async, so that closing the session at the request's end runs on the event loop: a sync
    # teardown would wait for a thread while holding the request's connection (see valid_job).
    with request.app.state.sessionmaker() as session:
        yield session


async def get_async_conn(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    async with async_connection(request) as conn:
        yield conn


def get_publisher(request: Request) -> BackgroundPublisher:
    return request.app.state.publisher


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_db)]
AsyncConnDep = Annotated[psycopg.AsyncConnection, Depends(get_async_conn)]
PublisherDep = Annotated[BackgroundPublisher, Depends(get_publisher)]


def valid_job(job_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> Job:
    """The job, detached, its read transaction ended so that the connection is back in the
    pool before the route runs. A request must not hold a connection while it waits for a
    thread: with more requests in flight than the pool has connections, every thread would
    wait for a connection held by a request waiting for a thread (GET /v1/jobs/{id} stalled
    at 64 clients until this). Another owner's job is a 404, as a missing one: a 403 would
    tell that it exists."""
    job = job_repo.get_job(session, job_id)
    if job is None or not principal.may_see(job.owner):  # another owner's: as if none
        raise HTTPException(404, f"no job with id {job_id}")
    session.expunge(job)
    session.rollback()
    return job


JobDep = Annotated[Job, Depends(valid_job)]


def get_dataset_lookup(session: SessionDep, principal: PrincipalDep) -> DatasetLookup:
    """Uploaded datasets by name (str) or id (UUID), described from their rows: the caller's
    own (by name: the caller's own only, even for an admin; by id: any, for an admin)."""

    def lookup(key: str | uuid.UUID) -> Mapping[str, Any] | None:
        row = (dataset_repo.get(session, key) if isinstance(key, uuid.UUID)
               else dataset_repo.get_by_name(session, key, principal.owner))
        if row is None or not principal.may_see(row.owner):
            return None
        return {"id": str(row.id), "name": row.name, "sha256": row.sha256, "task": row.task,
                "input_shape": row.input_shape, "target_shape": row.target_shape,
                "num_classes": row.num_classes, "class_names": row.class_names,
                "feature_names": row.feature_names,
                "splits": row.splits, "feature_stats": row.feature_stats}

    return lookup


DatasetLookupDep = Annotated[DatasetLookup, Depends(get_dataset_lookup)]
