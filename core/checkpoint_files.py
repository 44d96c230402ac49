"""A job's files on disk: its checkpoints under DATA_DIR/checkpoints/<job id>/ and its logs
under DATA_DIR/logs/<job id>/. Torch-free, so that the worker's supervisor and the API use it
without importing torch.

A checkpoint file is written to `step-<n>.pt.tmp`, renamed to `step-<n>.pt`, then recorded in
the `checkpoint` table. A process killed in between leaves a `.tmp` file, or a `.pt` file
that no row names: remove_unrecorded finds and removes both.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


def sha256_of(path: Path) -> str:
    """A file's SHA-256, read in 1 MiB chunks (checkpoints, exports)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def job_checkpoint_folder(checkpoint_dir: Path, job_id: uuid.UUID | str) -> Path:
    return checkpoint_dir / str(job_id)


def remove_unrecorded(folder: Path, recorded: Iterable[str]) -> list[Path]:
    """Remove every file of `folder` that is not one of the `recorded` paths (the rows of the
    job's checkpoints). Call it only while no process writes to the folder: the job's
    training process has exited, or it is the one calling. Returns what was removed."""
    if not folder.is_dir():
        return []
    keep = {Path(p).resolve() for p in recorded}
    removed = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.resolve() not in keep:
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d checkpoint file(s) with no row: %s", len(removed),
                 ", ".join(p.name for p in removed))
    return removed


def remove_job_files(checkpoint_dir: Path, log_dir: Path, job_id: uuid.UUID | str) -> None:
    """Delete a job's checkpoint folder and its log folder (a deleted job's files)."""
    for folder in (job_checkpoint_folder(checkpoint_dir, job_id), log_dir / str(job_id)):
        shutil.rmtree(folder, ignore_errors=True)
