"""`training` (how long, in what batches) and `resources` (where)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from models.spec import StrictModel


class TrainingSpec(StrictModel):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="initialisation, shuffling, dropout")
    checkpoint_every_epochs: int = Field(
        1, ge=0, description="0: only the final checkpoint"
    )
    log_every_steps: int | None = Field(
        None, ge=1, description="per-step train_loss interval; default ~50 points per epoch"
    )


class ResourcesSpec(StrictModel):
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when the worker has it, else CPU"
    )
