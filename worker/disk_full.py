"""Telling a full disk apart from other failures of a checkpoint write. torch's zip writer
reports it as "unexpected pos ..." and keeps the OSError (errno 28) only as the context of
its own error; the job must instead say what happened and what to do, and be retried: a
full disk is the machine's condition, not the job's."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import torch

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(OSError):
    """No space (or no quota) left where a checkpoint is written."""


def disk_full(error: BaseException, path: Path, payload: Any) -> DiskFull | None:
    """A DiskFull naming the file, the space left and the space a checkpoint takes, when
    `error` (or an error it was raised from or while handling) says the disk is full."""
    if not _caused_by_full_disk(error):
        return None
    try:
        free = f"{_mb(shutil.disk_usage(path.parent).free)} free"
    except OSError:
        free = "free space unknown"
    return DiskFull(
        f"no space left on device writing checkpoint {path.name} to {path.parent} ({free}; "
        f"a checkpoint of this job takes about {_mb(_tensor_bytes(payload))}): free space "
        "in DATA_DIR, or keep fewer checkpoints (TRAINDOCK_KEEP_CHECKPOINTS)"
    )


def _caused_by_full_disk(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in FULL_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _mb(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"
