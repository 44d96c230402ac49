"""`training` (how long, in what batches, in what precision, when to evaluate and stop) and
`resources` (where)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool

from core.specs.metrics import better_direction
from models.strict import StrictModel


class EarlyStoppingSpec(StrictModel):
    """Stop when a validation metric has not improved for `patience` evaluations."""

    monitor: str = Field(
        "val_loss", description="the validation metric watched, as for reduce_on_plateau's "
        "monitor: val_loss, val_accuracy, val_exact_match, val_rmse, val_mae or val_r2"
    )
    mode: Literal["min", "max"] | None = Field(
        None, description="null: max for accuracies, exact_match and r2, min otherwise"
    )
    patience: int = Field(
        5, ge=1, le=100_000, description="evaluations without improvement before stopping"
    )
    min_delta: float = Field(
        0.0, ge=0.0, le=1e6, description="the least change that counts as an improvement"
    )
    restore_best: StrictBool = Field(
        True, description="end with the weights of the best evaluation, not the last"
    )

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        return self.mode or ("max" if better_direction(self.monitor) == "max" else "min")


class TrainingSpec(StrictModel):
    epochs: int = Field(10, ge=1, description="passes over the training split")
    max_steps: int | None = Field(
        None, ge=1, le=100_000_000,
        description="stop after this many optimizer steps, even mid-epoch; the run ends at "
        "whichever of epochs and max_steps comes first",
    )
    batch_size: int = Field(64, ge=1, description="samples per forward and backward pass")
    accumulate_batches: int = Field(
        1, ge=1, le=1024,
        description="batches whose gradients are summed into one optimizer step: the "
        "effective batch is batch_size x accumulate_batches",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="initialisation, shuffling, dropout")
    checkpoint_every_epochs: int = Field(
        1, ge=0, description="0: only the final checkpoint"
    )
    log_every_steps: int | None = Field(
        None, ge=1, description="per-step train_loss interval; default ~50 points per epoch"
    )
    eval_every_epochs: int = Field(
        1, ge=1, le=100_000,
        description="evaluate on the validation split every N epochs, and after the last",
    )
    eval_every_steps: int | None = Field(
        None, ge=1, le=100_000_000,
        description="evaluate every N optimizer steps instead, and at the end of the run",
    )
    early_stopping: EarlyStoppingSpec | None = Field(
        None, description="null: train for the whole run"
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="bf16 or fp16: mixed precision (autocast; fp16 with a gradient scaler). "
        "Where the device cannot, the job trains in fp32 and says why in summary.notes",
    )
    compile: StrictBool = Field(
        False,
        description="torch.compile the network; when it cannot be compiled, the job trains "
        "uncompiled and says why in summary.notes",
    )


class ResourcesSpec(StrictModel):
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when the worker has it, else CPU"
    )
