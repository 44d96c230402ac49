"""Walk a large array a block of rows at a time, holding one block in memory.

A memory-mapped `.npy` file (np.load(..., mmap_mode="r")) is read with plain file reads
instead of through its mapping: every page touched through a mapping stays in the process's
resident memory until the mapping goes, so scanning a 1 GiB mapped array would leave the API
1 GiB larger. File reads go through the page cache, which the kernel can drop.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

import numpy as np

BLOCK_BYTES = 32 * 1024 * 1024


def _mapped_file(x: np.ndarray) -> tuple[str, int] | None:
    """(path, byte offset of x's first element) when `x` is a C-ordered memory-mapped file
    array, or a C-ordered view (a reshape, a block of rows) of one."""
    if not (isinstance(x, np.memmap) and x.filename and x.flags.c_contiguous):
        return None
    root = x
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not isinstance(root, np.memmap) or not isinstance(root.base, mmap.mmap):
        return None
    return root.filename, int(root.offset) + (x.ctypes.data - root.ctypes.data)


def row_blocks(x: np.ndarray, block_bytes: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
    """Consecutive blocks of rows of `x` (along axis 0), each an in-memory array."""
    n = len(x)
    row_bytes = max(1, x.itemsize * int(np.prod(x.shape[1:], dtype=np.int64)))
    rows = max(1, block_bytes // row_bytes)
    mapped = _mapped_file(x)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        if mapped is None:
            yield np.asarray(x[start:stop])
            continue
        path, offset = mapped
        count = (stop - start) * (row_bytes // x.itemsize)
        block = np.fromfile(path, dtype=x.dtype, count=count, offset=offset + start * row_bytes)
        yield block.reshape((stop - start, *x.shape[1:]))


def flat_chunks(x: np.ndarray, chunk_bytes: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
    """The values of `x` in C order, as flat in-memory arrays of at most `chunk_bytes`:
    unlike row_blocks(), one huge row (a 9000x9000 image) never has to fit at once."""
    step = max(1, chunk_bytes // max(1, x.itemsize))
    total = int(x.size)
    mapped = _mapped_file(x)
    flat = None if mapped is not None else np.ascontiguousarray(x).reshape(-1)
    for start in range(0, total, step):
        count = min(step, total - start)
        if mapped is None:
            yield flat[start:start + count]
            continue
        path, offset = mapped
        yield np.fromfile(path, dtype=x.dtype, count=count, offset=offset + start * x.itemsize)


class NpyWriter:
    """Build a large array on disk instead of in memory: an `.npy` file written a block at a
    time with plain file writes (not through a mapping, for the reason above), then opened
    memory-mapped read-only by `finish()`. row_blocks() and dataset_store.store() read such
    an array back without making it resident, so a parser that writes its big arrays here
    keeps an upload's memory to a few blocks whatever the file's size."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = path
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.expected = int(np.prod(self.shape, dtype=np.int64))
        self.written = 0
        self._handle = open(path, "wb")  # noqa: SIM115 - closed in finish() or close()
        np.lib.format.write_array_header_1_0(
            self._handle, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                           "fortran_order": False, "shape": self.shape})

    def write(self, values: np.ndarray) -> None:
        """Append values (any shape) in C order, converted to the writer's dtype."""
        flat = np.ascontiguousarray(values, dtype=self.dtype).reshape(-1)
        if self.written + flat.size > self.expected:
            raise ValueError(f"more than the {self.expected} values of shape {self.shape}")
        self._handle.write(flat.tobytes())
        self.written += flat.size

    def finish(self) -> np.ndarray:
        if self.written != self.expected:
            raise ValueError(f"{self.written} values written of {self.expected}")
        self._handle.close()
        return np.load(self.path, mmap_mode="r", allow_pickle=False)

    def close(self) -> None:
        """Give up (on an error): close and delete the file."""
        self._handle.close()
        self.path.unlink(missing_ok=True)
