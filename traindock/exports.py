"""Saving an exported model (GET /v1/jobs/{id}/export): streamed to a temporary file beside
the target, checked against the X-Checksum-Sha256 header, renamed into place. Shared by
`Client.export` and `traindock export`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx

from traindock.errors import TraindockError
from traindock.transport import TIMEOUT_S, Transport, save_verified

FORMATS = ("onnx", "pt2", "safetensors")
SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2", "safetensors": ".safetensors.zip"}
# The first export of a checkpoint is made while the request waits: up to the server's
# TRAINDOCK_EXPORT_DEADLINE_S (300 s by default).
EXPORT_TIMEOUT = httpx.Timeout(TIMEOUT_S, read=330.0)


def attachment_name(disposition: str | None) -> str | None:
    """The file name of a Content-Disposition header, without any folder in it."""
    match = re.search(r'filename="?([^";]+)"?', disposition or "")
    return Path(match.group(1)).name if match else None


def target_for(dest: str | os.PathLike[str] | None, name: str) -> Path:
    """`dest` None: `name` in the current folder; a folder (existing, or given with a
    trailing "/", then made): `name` in it; else the file path itself."""
    if dest is None:
        return Path(name)
    target = Path(dest)
    if os.fspath(dest).endswith(("/", os.sep)):
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TraindockError(f"cannot make the folder {target}: {exc.strerror}") from None
    if target.is_dir():
        return target / name
    if not target.parent.is_dir():
        raise TraindockError(f"cannot write into {target.parent}: no such folder")
    return target


def save_export(transport: Transport, job_id: str, fmt: str, checkpoint: str | int = "best",
                dest: str | os.PathLike[str] | None = None, force: bool = True) -> Path:
    """Export job `job_id`'s checkpoint as `fmt` and save it; returns the path. An existing
    file is replaced only with `force`."""
    if fmt not in FORMATS:
        raise TraindockError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    with transport.stream(f"/v1/jobs/{job_id}/export", timeout=EXPORT_TIMEOUT, format=fmt,
                          checkpoint=str(checkpoint)) as response:
        name = attachment_name(response.headers.get("content-disposition")) or (
            f"{job_id[:8]}-{checkpoint}{SUFFIXES[fmt]}")
        target = target_for(dest, name)
        if target.exists() and not force:
            raise TraindockError(f"{target} already exists; nothing was saved. Pass --force "
                                 "to replace it, or -o PATH to save elsewhere")
        save_verified(response, target, what="the export")
    return target
