"""Uploaded datasets on disk: `DATA_DIR/datasets/<sha256>/`, one `.npy` file per array (so
that the worker can memory-map them) and `meta.json`. The folder is named by the sha256 of
its contents: the same data uploaded twice is stored once. A folder appears whole or not at
all (written beside, fsynced, renamed).

The database's `dataset` rows name these folders; several rows may share one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.array_chunks import flat_chunks
from core.uploads.parsed import SPLITS, Parsed

FORMAT_VERSION = 1
META = "meta.json"


@dataclass(frozen=True)
class Stored:
    sha256: str
    bytes: int
    path: Path
    meta: dict[str, Any]


def dataset_path(root: Path, sha256: str) -> Path:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256: {sha256!r}")  # never a path from outside
    return root / sha256


def describe_parsed(parsed: Parsed) -> dict[str, Any]:
    """meta.json: what a job needs to know to train on the folder, without reading arrays."""
    sizes = {name: (None if parsed.split(name)[0] is None else len(parsed.split(name)[0]))
             for name in SPLITS}
    return {
        "format_version": FORMAT_VERSION,
        "task": parsed.task,
        "input_shape": list(parsed.input_shape),
        "target_shape": list(parsed.y_train.shape[1:]),
        "num_classes": parsed.num_classes,
        "class_names": parsed.class_names,
        "feature_names": parsed.feature_names,
        "splits": sizes,
    }


def store(parsed: Parsed, root: Path) -> Stored:
    """Write the arrays and meta.json; returns the folder, reused when it exists already."""
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    try:
        digest, size, meta = write_folder(parsed, tmp)
        return Stored(digest, size, publish(tmp, root, digest), meta)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_folder(parsed: Parsed, tmp: Path) -> tuple[str, int, dict[str, Any]]:
    """The arrays and meta.json written into the new folder `tmp` (a `.tmp-` name beside
    the store, so that publish() can rename it); (sha256, bytes, meta)."""
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    for name in SPLITS:
        x, y = parsed.split(name)
        if x is None:
            continue
        for kind, array in (("x", x), ("y", y)):
            _save(tmp / f"{kind}_{name}.npy", array)
    meta = describe_parsed(parsed)
    (tmp / META).write_text(json.dumps(meta, sort_keys=True))
    size = sum(f.stat().st_size for f in tmp.iterdir())
    return _digest(tmp), size, meta


def publish(tmp: Path, root: Path, digest: str) -> Path:
    """Rename a folder write_folder() made to its content's name; when that folder exists
    already, `tmp` is removed and the existing one serves."""
    final = dataset_path(root, digest)
    if final.is_dir():
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, final)
        _fsync_dir(root)
    return final


def _save(path: Path, array: np.ndarray) -> None:
    """np.save's bytes, written a block of rows at a time: a memory-mapped array (a parser's
    output on disk) is copied without mapping it all into this process."""
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, np.lib.format.header_data_from_array_1_0(np.empty((0,), array.dtype)) | {
                "shape": tuple(array.shape), "fortran_order": False})
        for chunk in flat_chunks(array):
            handle.write(chunk.tobytes())
        handle.flush()
        os.fsync(handle.fileno())


def _digest(folder: Path) -> str:
    """sha256 over every file's name and contents, in name order."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_meta(root: Path, sha256: str) -> dict[str, Any]:
    return json.loads((dataset_path(root, sha256) / META).read_text())


def load_arrays(root: Path, sha256: str, mmap: bool) -> dict[str, np.ndarray]:
    """Every stored array by name (`x_train`, `y_train`, and the val and test ones when
    present); memory-mapped read-only with `mmap`, else read whole. Never unpickles."""
    folder = dataset_path(root, sha256)
    arrays = {}
    for path in sorted(folder.glob("*.npy")):
        arrays[path.stem] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    return arrays


def remove(root: Path, sha256: str) -> None:
    shutil.rmtree(dataset_path(root, sha256), ignore_errors=True)


STALE_AFTER_S = 3600.0


def sweep_stale(root: Path, uploads: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove what a crashed API left behind: half-written dataset folders (`.tmp-*` in the
    store) and received bodies with their work folders (in `uploads`). Only entries untouched
    for `older_than_s`: another API process may be writing a fresh one right now. Returns
    what was removed."""
    cutoff = time.time() - older_than_s
    stale = [p for p in [*_entries(root, ".tmp-*"), *_entries(uploads, "*")]
             if p.stat().st_mtime < cutoff]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def _entries(folder: Path, pattern: str) -> list[Path]:
    return list(folder.glob(pattern)) if folder.is_dir() else []
