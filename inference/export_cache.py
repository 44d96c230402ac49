"""Where exported files are kept: DATA_DIR/checkpoints/<job id>/exports/<sha256 prefix>.<fmt>,
next to the checkpoints, keyed by the checkpoint's sha256 and the format, so that an export
is made once per checkpoint and format, and goes when the job is deleted (its checkpoint
folder is). Checkpoint retention removes only the files directly in the job's folder; the
exports of checkpoints retention dropped are removed by `prune` at the next export.
Torch-free: the API imports it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from core.checkpoint_files import job_checkpoint_folder

SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2", "safetensors": ".safetensors.zip"}
MEDIA_TYPES = {"onnx": "application/octet-stream", "pt2": "application/zip",
               "safetensors": "application/zip"}
KEY_CHARS = 16  # of the checkpoint's sha256
STALE_TMP_S = 3600  # a temporary file this old is a killed export's, not one in progress


def export_folder(checkpoint_dir: Path, job_id: uuid.UUID | str) -> Path:
    return job_checkpoint_folder(checkpoint_dir, job_id) / "exports"


def cached_path(checkpoint_dir: Path, job_id: uuid.UUID | str, sha256: str, fmt: str) -> Path:
    return export_folder(checkpoint_dir, job_id) / f"{sha256[:KEY_CHARS]}{SUFFIXES[fmt]}"


def prune(checkpoint_dir: Path, job_id: uuid.UUID | str, kept_sha256: set[str]) -> list[Path]:
    """Remove the exports of checkpoints no longer kept (and temporary files left by a killed
    export). Returns what was removed."""
    folder = export_folder(checkpoint_dir, job_id)
    if not folder.is_dir():
        return []
    keys = {sha[:KEY_CHARS] for sha in kept_sha256}
    removed = []
    for path in folder.iterdir():
        if path.name.startswith(".") and time.time() - path.stat().st_mtime < STALE_TMP_S:
            continue  # an export being written
        if path.is_file() and path.name.split(".", 1)[0] not in keys:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
