"""An attempt's start-up, phase by phase: the seconds from the start of its training process
(a cold child) or from the hand-over of the job (a warm child) to the end of its first
training step. Logged before training, and stored on the job (`job.startup`) once the first
step is done, for GET /v1/jobs/{id}, the job page and `traindock show --startup`.

Every phase is measured on the wall clock (time.time()), the one clock the spawning worker,
the child and the client share on a host, so the phases add up to the total.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psutil
import torch
from sqlalchemy.exc import SQLAlchemyError

from core.db import Database
from core.repo import jobs as job_repo
from worker.began import SPAWNED_AT_ENV

log = logging.getLogger("traindock.child")



def spawned_at() -> float:
    """When the worker started this process; without the variable (the child started by
    hand), the kernel's start time, which psutil rounds to the boot time's whole second."""
    try:
        return float(os.environ[SPAWNED_AT_ENV])
    except (KeyError, ValueError):
        return psutil.Process().create_time()


class Startup:
    """The phases of one attempt's start-up, in seconds, in the order they ran."""

    def __init__(self, attempt: int, warm: bool, origin: float,
                 times: dict[str, float]) -> None:
        self.attempt = attempt
        self.warm = warm
        self.origin = origin  # time.time() the attempt's start-up is counted from
        self.times = dict(times)
        self.last = time.time()
        self.queue_s: float | None = None
        self.first_step_at: float | None = None

    @classmethod
    def cold(cls, attempt: int, imports_began: float) -> Startup:
        """A process started for this attempt: its interpreter's start and imports are the
        attempt's."""
        now, origin = time.time(), spawned_at()
        return cls(attempt, False, origin, {"interpreter": max(0.0, imports_began - origin),
                                            "imports": max(0.0, now - imports_began)})

    @classmethod
    def warm_child(cls, attempt: int, handed_at: float) -> Startup:
        """A process started ahead: its interpreter and imports cost the attempt only what
        was left of them when the job was handed over (0 when it was ready)."""
        return cls(attempt, True, handed_at,
                   {"interpreter": 0.0, "imports": max(0.0, time.time() - handed_at)})

    def mark(self, phase: str) -> None:
        """The phase that has just ended: the time since the previous mark is its."""
        now = time.time()
        self.times[phase] = now - self.last
        self.last = now

    def log_ready(self) -> None:
        parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.times.items())
        log.info("ready to train after %.2f s (%s child): %s; %d CPU threads",
                 sum(self.times.values()), "warm" if self.warm else "cold", parts,
                 torch.get_num_threads())

    def as_dict(self) -> dict[str, Any]:
        """The breakdown stored in job.startup (api/schemas.py StartupOut documents it)."""
        ended = self.first_step_at if self.first_step_at is not None else self.last
        return {
            "attempt": self.attempt,
            "warm": self.warm,
            "queue_s": None if self.queue_s is None else round(self.queue_s, 4),
            **{f"{name}_s": round(seconds, 4) for name, seconds in self.times.items()},
            "total_s": round(ended - self.origin, 4),
            "first_step_at": None if self.first_step_at is None else
            datetime.fromtimestamp(self.first_step_at, UTC).isoformat(),
        }


def queue_seconds(job: Any) -> float | None:
    """Submit to claim, for a first attempt (a later one's wait is not stored)."""
    if job.attempt != 1 or job.started_at is None or job.created_at is None:
        return None
    return max(0.0, (job.started_at - job.created_at).total_seconds())


def after_first_step(startup: Startup, optimizer: torch.optim.Optimizer,
                     store: Callable[[dict[str, Any]], None]) -> None:
    """Mark `first_step` when the optimizer's first step of this attempt returns, and store
    the breakdown. A hook on the optimizer, not on the loop: the loop (worker/train.py) only
    calls its callbacks at logged steps. Under float16 loss scaling, a step that the scaler
    skips (its gradients overflowed) is no step: the first one taken counts."""

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        handle.remove()
        startup.mark("first_step")
        startup.first_step_at = time.time()
        breakdown = startup.as_dict()
        log.info("first training step done %.2f s after the start-up began (first step "
                 "itself %.3f s)", breakdown["total_s"], breakdown["first_step_s"])
        store(breakdown)

    handle = optimizer.register_step_post_hook(hook)


def store_startup(db: Database, job_id: uuid.UUID, attempt: int,
                  breakdown: dict[str, Any]) -> None:
    """Write the breakdown on the job, guarded by the attempt. Once, and never at the cost
    of the training: a failure is logged and the loop goes on (its own writes will meet the
    database's trouble, and deal with it)."""
    try:
        with db.transaction() as session:
            job_repo.record_startup(session, job_id, attempt, breakdown)
    except SQLAlchemyError as exc:
        log.warning("could not store the start-up breakdown: %s", str(exc).splitlines()[0])
