"""Inputs too large for the device: they stay in a memory-mapped array on the host and reach
the device one batch at a time.

`StreamedInputs` stands in for the tensor the loop would otherwise index (worker/train.py,
worker/evaluate.py, models/gradcheck.py): `len()`, `.shape`, `.device`, and indexing with a
batch's index tensor or with a slice, which returns a float32 tensor on the device. The rows
are normalised on the host with the same torch operation as the in-memory path
(worker/data.py `normalize_inputs`), so both paths feed the network the same values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Normalize = Callable[[torch.Tensor], torch.Tensor]


class StreamedInputs:
    """One split's inputs: rows `rows` (None: every row) of `array`, normalised by
    `normalize` when read."""

    def __init__(self, array: np.ndarray, rows: np.ndarray | None, normalize: Normalize,
                 device: torch.device) -> None:
        self.array = array
        self.rows = rows
        self.normalize = normalize
        self.device = device
        self.dtype = torch.float32
        n = len(array) if rows is None else len(rows)
        self.shape = torch.Size((n, *array.shape[1:]))
        # Pinned host memory lets the copy to a GPU run asynchronously (non_blocking);
        # torch's pinned allocator keeps a buffer alive until its copy has finished.
        self._pin = device.type == "cuda"

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice | torch.Tensor) -> torch.Tensor:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            picked = (self.array[start:stop:step] if self.rows is None
                      else self.array[self.rows[start:stop:step]])
        elif isinstance(index, torch.Tensor):
            positions = index.detach().cpu().numpy()  # a host sync, as reading rows needs
            picked = self.array[positions if self.rows is None else self.rows[positions]]
        else:
            raise TypeError(f"index streamed inputs with a slice or a tensor, not {index!r}")
        batch = self.normalize(torch.from_numpy(np.array(picked, dtype=np.float32)))
        if self._pin:
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=True)

    def __repr__(self) -> str:
        return f"StreamedInputs(shape={tuple(self.shape)}, device={self.device})"
