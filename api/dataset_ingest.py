"""From a parsed upload to a dataset row, and deleting one. Parsing, summarising and
writing the arrays happen in a bounded child process (api/bounded_ingest.py); this records
its result. Whatever fails, nothing stays behind: the child's folder appears under its
sha256 whole or not at all, and a folder this upload published for a row that then could not
be inserted is removed again unless another row names it. An advisory lock per sha256 keeps
an upload that reuses a folder and a delete that removes it from interleaving.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.bounded_ingest import child_request, parse_in_child
from api.dataset_schemas import UploadOptions
from core import datasets
from core.dataset_store import dataset_path, publish, remove
from core.repo import datasets as dataset_repo
from core.repo.usage import stored_bytes
from core.settings import Settings
from core.storage_quota import over_limit
from core.tables import Dataset
from core.uploads.parsed import UploadError


def check_name_free(session: Session, name: str, owner: str) -> None:
    """409 when `name` is a built-in dataset's or one of `owner`'s uploaded ones already."""
    if name in datasets.BUILTINS:
        raise UploadError("name", f"{name!r} is a built-in dataset; choose another name",
                          status=409)
    taken = dataset_repo.get_by_name(session, name, owner)
    if taken is not None:
        raise UploadError("name", f"{name!r} already names dataset {taken.id}; choose another "
                          f"name, or DELETE /v1/datasets/{taken.id} first", status=409)


def check_room(session: Session, settings: Settings, owner: str, adding: int = 0) -> None:
    """413 when `owner`'s stored bytes with `adding` more would pass
    TRAINDOCK_MAX_STORED_BYTES_PER_OWNER (core/storage_quota.py)."""
    limit = settings.max_stored_bytes_per_owner
    if not limit:
        return
    problem = over_limit(owner, stored_bytes(session, owner), adding, limit)
    if problem:
        raise UploadError("file", problem, status=413)


def ingest(session: Session, settings: Settings, path: Path, filename: str,
           options: UploadOptions, source: dict[str, Any], owner: str) -> Dataset:
    """The whole of an upload without HTTP (for callers outside a request): the name check,
    the bounded parsing child, and `owner`'s record. Raises UploadError (4xx)."""
    check_name_free(session, options.name, owner)
    session.rollback()  # end the read transaction: parsing may take a while
    work_dir = path.with_name(f"{path.name}.work")
    tmp_dir = settings.dataset_dir / f".tmp-{uuid.uuid4().hex}"
    work_dir.mkdir()
    try:
        request = child_request(settings, path, filename, child_options(options), work_dir,
                                tmp_dir)
        parsed = asyncio.run(parse_in_child(settings, request))
        return record(session, settings, parsed, tmp_dir, options, source, owner)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)


def child_options(options: UploadOptions) -> dict[str, Any]:
    """What the parsing child needs of the request's options (plain JSON)."""
    size = options.image_size
    return {"target": options.target, "task": options.task, "format": options.format,
            "image_size": [size, size] if isinstance(size, int) else size,
            "color": options.color}


def record(session: Session, settings: Settings, parsed: dict[str, Any], tmp_dir: Path,
           options: UploadOptions, source: dict[str, Any], owner: str) -> Dataset:
    """Publish the folder the parsing child wrote at `tmp_dir` (parsed: its answer) under
    its sha256 and insert the row, both under the sha256's lock, so that a delete of a
    folder with the same content cannot interleave."""
    root = settings.dataset_dir
    sha256, meta = parsed["sha256"], parsed["meta"]
    check_room(session, settings, owner, parsed["bytes"])
    dataset_repo.lock_sha256(session, sha256)
    try:
        publish(tmp_dir, root, sha256)
        try:
            with session.begin_nested():
                row = dataset_repo.add(
                    session, owner=owner, name=options.name, sha256=sha256, format=parsed["format"],
                    task=meta["task"], input_shape=meta["input_shape"],
                    target_shape=meta["target_shape"], num_classes=meta["num_classes"],
                    class_names=meta["class_names"],
                    feature_names=meta.get("feature_names"), class_counts=parsed["class_counts"],
                    splits=meta["splits"], feature_stats=parsed["feature_stats"],
                    bytes=parsed["bytes"], source=source,
                )
        except IntegrityError:  # another upload took the name while this one was parsed
            raise UploadError("name", f"{options.name!r} was just taken by another upload; "
                              "choose another name", status=409) from None
        session.commit()
        return row
    except BaseException:
        session.rollback()
        _remove_if_unused(session, root, sha256)
        raise


def _remove_if_unused(session: Session, root: Path, sha256: str) -> None:
    dataset_repo.lock_sha256(session, sha256)
    if not dataset_repo.sha256_in_use(session, sha256):
        remove(root, sha256)
    session.commit()


def delete(session: Session, settings: Settings, row: Dataset) -> None:
    """Delete the row, and its folder when no other row names it. 409 while a queued or
    running job uses the dataset."""
    root = settings.dataset_dir
    dataset_repo.lock_sha256(session, row.sha256)
    job_id = dataset_repo.used_by_active_job(session, row)
    if job_id is not None:
        raise UploadError("id", f"job {job_id} is queued or running on dataset {row.name!r}; "
                          f"cancel it (POST /v1/jobs/{job_id}/cancel) or let it finish first",
                          status=409)
    dataset_repo.delete(session, row.id)
    folder, trash = dataset_path(root, row.sha256), None
    if folder.is_dir() and not dataset_repo.sha256_in_use(session, row.sha256):
        # Moved aside, not removed, until the row's deletion is committed: a failed commit
        # puts it back. `.tmp-` names are what sweep_stale() clears after a crash.
        trash = root / f".tmp-deleted-{uuid.uuid4().hex}"
        os.replace(folder, trash)
        os.utime(trash)  # fresh: sweep_stale() in another API process must not take it yet
    try:
        session.commit()
    except BaseException:
        if trash is not None:
            os.replace(trash, folder)
        raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
