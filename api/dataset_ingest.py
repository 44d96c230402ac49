"""From a received file to a dataset row: parse, summarize, store, record; and deleting one.

Runs in a worker thread (parsing is CPU work). Whatever fails, nothing stays behind: store()
writes its folder whole or not at all, and a folder this upload stored for a row that then
could not be inserted is removed again unless another row names it. An advisory lock per
sha256 keeps an upload that reuses a folder and a delete that removes it from interleaving.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.dataset_schemas import UploadOptions
from core import datasets
from core.dataset_store import dataset_path, remove, store
from core.dataset_summary import class_counts, feature_stats
from core.repo import datasets as dataset_repo
from core.settings import Settings
from core.tables import Dataset
from core.uploads.formats import ParseOptions, format_from_filename, parse_upload
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


def parse_options(options: UploadOptions, settings: Settings, work_dir: Path | None = None
                  ) -> ParseOptions:
    size = options.image_size
    return ParseOptions(
        target=options.target,
        task=options.task,
        image_size=(size, size) if isinstance(size, int) else size,
        color=options.color or "rgb",
        max_unpacked_bytes=settings.max_unpacked_bytes,
        work_dir=work_dir,
    )


def ingest(session: Session, settings: Settings, path: Path, filename: str,
           options: UploadOptions, source: dict[str, Any], owner: str) -> Dataset:
    """Parse the file at `path` (the client's `filename` only tells its format), store its
    arrays and insert `owner`'s row. Raises UploadError (4xx) for anything the uploader can
    fix."""
    check_name_free(session, options.name, owner)
    session.rollback()  # end the read transaction: parsing may take a while
    # Large feature arrays are built in here, on disk, and read back in blocks, so that the
    # API's memory does not grow with the upload.
    work_dir = path.with_name(f"{path.name}.work")
    work_dir.mkdir()
    try:
        return _parse_and_record(session, settings, path, filename, options, source, work_dir,
                                 owner)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _parse_and_record(session: Session, settings: Settings, path: Path, filename: str,
                      options: UploadOptions, source: dict[str, Any], work_dir: Path,
                      owner: str) -> Dataset:
    parse = parse_options(options, settings, work_dir)
    fmt = options.format or format_from_filename(filename, path, parse)
    parsed = parse_upload(path, fmt, parse)
    counts = class_counts(parsed)
    stats = feature_stats(parsed.x_train)
    root = settings.dataset_dir
    stored = store(parsed, root)
    try:
        dataset_repo.lock_sha256(session, stored.sha256)
        if not stored.path.is_dir():  # a delete removed the shared folder meanwhile
            stored = store(parsed, root)
        meta = stored.meta
        try:
            with session.begin_nested():
                row = dataset_repo.add(
                    session, owner=owner, name=options.name, sha256=stored.sha256, format=fmt,
                    task=meta["task"], input_shape=meta["input_shape"],
                    target_shape=meta["target_shape"], num_classes=meta["num_classes"],
                    class_names=meta["class_names"], class_counts=counts,
                    splits=meta["splits"], feature_stats=stats, bytes=stored.bytes,
                    source=source,
                )
        except IntegrityError:  # another upload took the name while this one was parsed
            raise UploadError("name", f"{options.name!r} was just taken by another upload; "
                              "choose another name", status=409) from None
        session.commit()
        return row
    except BaseException:
        session.rollback()
        _remove_if_unused(session, root, stored.sha256)
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
