"""Dataset rows: add, read, list, delete, and whether a folder or an active job still needs one."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import Session

from core.tables import Dataset, Job

ACTIVE_STATES = ("queued", "running")


def add(session: Session, **values: Any) -> Dataset:
    """Insert a row (columns of core.tables.Dataset by name). A taken name raises
    sqlalchemy's IntegrityError at the flush."""
    dataset = Dataset(id=values.pop("id", None) or uuid.uuid4(), **values)
    session.add(dataset)
    session.flush()
    session.refresh(dataset)
    return dataset


def get(session: Session, dataset_id: uuid.UUID) -> Dataset | None:
    return session.get(Dataset, dataset_id)


def get_by_name(session: Session, name: str, owner: str) -> Dataset | None:
    """`owner`'s dataset of that name: names are unique per owner."""
    return session.scalar(select(Dataset).where(Dataset.name == name, Dataset.owner == owner))


def get_by_id_or_name(session: Session, key: str, owner: str) -> Dataset | None:
    """A path segment that may be either: a UUID is looked up as an id first (any owner's:
    the caller checks whose it is), a name among `owner`'s."""
    try:
        dataset_id = uuid.UUID(key)
    except ValueError:
        return get_by_name(session, key, owner)
    return get(session, dataset_id) or get_by_name(session, key, owner)


def list_datasets(session: Session, owner: str | None, limit: int = 1000) -> list[Dataset]:
    """Newest first; only `owner`'s unless None (every owner's)."""
    query = select(Dataset).order_by(Dataset.created_at.desc(), Dataset.id.desc()).limit(limit)
    if owner is not None:
        query = query.where(Dataset.owner == owner)
    return list(session.scalars(query))


def delete(session: Session, dataset_id: uuid.UUID) -> Dataset | None:
    """Delete the row; returns it (for its sha256), or None when there was none."""
    return session.scalar(
        sql_delete(Dataset).where(Dataset.id == dataset_id).returning(Dataset)
    )


def sha256_in_use(session: Session, sha256: str, besides: uuid.UUID | None = None) -> bool:
    """Whether a row (other than `besides`) names the folder `sha256`."""
    query = select(Dataset.id).where(Dataset.sha256 == sha256).limit(1)
    if besides is not None:
        query = query.where(Dataset.id != besides)
    return session.scalar(query) is not None


def used_by_active_job(session: Session, dataset: Dataset) -> uuid.UUID | None:
    """The id of a queued or running job whose spec references `dataset` (by id or name, or
    by the sha256 the server recorded in `spec.dataset`), or None."""
    ref = Job.spec["dataset"]
    return session.scalar(
        select(Job.id)
        .where(
            Job.state.in_(ACTIVE_STATES),
            or_(
                ref["id"].astext == str(dataset.id),
                # A name is its owner's: another owner's job on a dataset of the same name
                # uses their own.
                and_(Job.owner == dataset.owner, ref["name"].astext == dataset.name),
                ref["sha256"].astext == dataset.sha256,
            ),
        )
        .limit(1)
    )


def lock_sha256(session: Session, sha256: str) -> None:
    """Hold a transaction-scoped advisory lock on one stored folder, so that an upload that
    reuses the folder and a delete that removes it never interleave."""
    key = int.from_bytes(bytes.fromhex(sha256[:16]), "big", signed=True)
    session.execute(select(func.pg_advisory_xact_lock(key)))
