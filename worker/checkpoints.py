"""Checkpoint files: everything needed to resume or evaluate, written atomically."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.checkpoint_files import sha256_of
from worker.disk_full import disk_full
from worker.schedules import Scheduler
from worker.state import EpochProgress, LoopState

FORMAT_VERSION = 1


def checkpoint_state(
    state: LoopState, spec: dict[str, Any], normalization: dict[str, torch.Tensor],
    metrics: dict[str, float],
) -> dict[str, Any]:
    """The checkpoint dict. Only tensors, numbers, strings and containers of them, so that
    it loads with torch.load(weights_only=True)."""
    np_state = np.random.get_state()
    return {
        "format": FORMAT_VERSION,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict() if state.scheduler else None,
        "scaler": state.scaler.state_dict() if state.scaler else None,
        "early_stopping": state.stopper.state_dict() if state.stopper else None,
        "notes": list(state.notes),
        "step": state.step,
        "epoch": state.epoch,
        "loop": state.in_epoch.as_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "shuffle": state.shuffle.get_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                      *np_state[2:]],
            "python": random.getstate(),
        },
        "normalization": {k: v.cpu() for k, v in normalization.items()},
        "spec": spec,
        "metrics": metrics,
    }


def copied(value: Any) -> Any:
    """`value` (a checkpoint dict) with every tensor copied to the CPU, so that it can be
    written while training goes on changing the originals in place."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: copied(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(copied(v) for v in value)
    return value


def write_atomically(payload: dict[str, Any], path: Path) -> tuple[str, int]:
    """Write to a temp file, fsync, rename, fsync the folder. Returns (sha256, size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        digest = sha256_of(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        full = disk_full(exc, path, payload)
        if full is not None:
            raise full from exc
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return digest, size


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def restore_loop_state(
    payload: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    device: torch.device, scheduler: Scheduler | None = None,
) -> LoopState:
    """Put model, optimizer, scheduler and every random generator back as they were when
    `payload` was written, and return the loop's position, so that training continues exactly.
    Build the scheduler before calling this: building one resets the optimizer's rates."""
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(payload.get("scheduler"))
    rng = payload["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    kind, keys, *rest = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_as_tuple(rng["python"]))
    shuffle = torch.Generator()
    shuffle.set_state(rng["shuffle"])
    return LoopState(
        model, optimizer, shuffle, epoch=payload["epoch"], step=payload["step"],
        in_epoch=EpochProgress.from_dict(payload.get("loop", {}), device), scheduler=scheduler,
        restored={"scaler": payload.get("scaler"),
                  "early_stopping": payload.get("early_stopping")},
        notes=list(payload.get("notes", [])),
    )


def _as_tuple(value: Any) -> Any:
    """Python's RNG state is nested tuples; a checkpoint may hand lists back."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def checkpoint_path(root: Path, job_id: str, step: int) -> Path:
    return root / job_id / f"step-{step}.pt"
