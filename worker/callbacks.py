"""Persistence for the training loop: metric points and progress to PostgreSQL, checkpoints
to disk. Every write is guarded by (job_id, attempt): when another attempt owns the job,
the sink raises LeaseLost and the child stops."""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.exc import InterfaceError, OperationalError

from core.checkpoint_retention import beyond_retention
from core.db import Database, retry_database
from core.points import Point
from core.progress import Progress
from core.repo import checkpoints as checkpoint_repo
from core.repo import jobs as job_repo
from core.repo import metrics as metric_repo
from core.specs.metrics import better_direction
from worker.behind import Behind
from worker.checkpoints import checkpoint_path, checkpoint_state, copied, write_atomically
from worker.state import LoopState

log = logging.getLogger(__name__)

MAX_BUFFERED_POINTS = 1_000_000  # ~100 MB; past it the job fails rather than lose data


class LeaseLost(RuntimeError):
    """Another attempt owns the job now (this one was reaped or cancelled)."""


class DatabaseGone(RuntimeError):
    """The database stayed away longer than the buffer or the retry time allows."""


def unwritable(error: BaseException | None) -> bool:
    """Whether the loop ended because nothing more can be written: another attempt owns the
    job, or the database is away (waiting it out again would only delay the exit)."""
    return isinstance(error, (LeaseLost, DatabaseGone, OperationalError, InterfaceError))


class Summary:
    """Latest and best value of every epoch metric, and the test metrics at the end."""

    def __init__(self) -> None:
        self.latest: dict[str, float] = {}
        self.best: dict[str, dict[str, Any]] = {}
        self.test: dict[str, float] = {}
        # Reports that are not metric points (a gradient-check preflight), by key. They are
        # not rebuilt from points on resume: the child carries them over from the job row.
        self._reports: dict[str, Any] = {}
        self._notes: list[str] = []

    def add_report(self, key: str, report: dict[str, Any]) -> None:
        self._reports[key] = report

    def report(self, key: str) -> Any | None:
        """The report kept under `key`, or None."""
        return self._reports.get(key)

    def set_notes(self, notes: list[str]) -> None:
        """What the user should know about how the run went (LoopState.notes)."""
        self._notes = list(notes)

    def add(self, point: Point) -> None:
        if point.name.endswith("_step"):
            return
        if point.name.startswith("test_"):
            self.test[point.name] = point.value
            return
        self.latest[point.name] = point.value
        mode = better_direction(point.name)
        current = self.best.get(point.name)
        if mode and (
            current is None
            or (mode == "min" and point.value < current["value"])
            or (mode == "max" and point.value > current["value"])
        ):
            self.best[point.name] = {"value": point.value, "step": point.step,
                                     "epoch": point.epoch}

    def as_dict(self) -> dict[str, Any]:
        notes = {"notes": self._notes} if self._notes else {}
        return {**self._reports, **notes, "latest": self.latest, "best": self.best,
                "test": self.test}

    @classmethod
    def rebuilt(cls, history: list[tuple[str, int, float, int]]) -> Summary:
        """The summary as it stood at a checkpoint, from the points kept up to it."""
        summary = cls()
        for name, step, value, epoch in history:
            summary.add(Point(name=name, value=value, step=step, epoch=epoch))
        return summary


class MetricSink:
    """Buffers points and flushes them with COPY at most every `flush_s` seconds, together
    with the job's progress and summary in the same transaction. Thread-safe: a checkpoint
    written in the background flushes it too."""

    def __init__(
        self, db: Database, job_id: uuid.UUID, attempt: int, flush_s: float,
        retry_s: float, progress: Progress, summary: Summary | None = None,
    ) -> None:
        self.db = db
        self.job_id = job_id
        self.attempt = attempt
        self.flush_s = flush_s
        self.retry_s = retry_s
        self.buffer: list[Point] = []
        self.summary = summary or Summary()
        # Where the loop stands; until its first points, where the attempt starts.
        self.progress = progress
        self.key_ids: dict[str, int] = {}
        self.last_flush = time.monotonic()
        self.lock = threading.Lock()  # the buffer, the summary, the progress
        self.write_lock = threading.Lock()  # one flush at a time

    def on_points(self, state: LoopState, points: list[Point]) -> None:
        now = datetime.now(UTC)
        with self.lock:
            for p in points:
                self.buffer.append(p.stamped(now))
                self.summary.add(p)
            self._note_progress(state)
        # Due, and not being written by the checkpoint thread (these points go with the next)
        if time.monotonic() - self.last_flush >= self.flush_s and not self.write_lock.locked():
            self.flush()

    def _note_progress(self, state: LoopState) -> None:
        self.progress = Progress(epoch=state.epoch, epochs=state.epochs, step=state.step,
                                 total_steps=state.total_steps)
        if state.notes:
            self.summary.set_notes(state.notes)

    def on_epoch_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        pass

    def on_train_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        pass  # on_exit writes the rest

    def on_preempt(self, state: LoopState) -> None:
        # Before the stop's checkpoint is written: a cancel gives the process a second.
        self.flush_all()

    def on_exit(self, state: LoopState, error: BaseException | None) -> None:
        """Every way out of the loop: write the buffered points and the step the loop stopped
        at, so that a job that diverged or crashed keeps its curves up to that step."""
        if unwritable(error):
            return
        with self.lock:
            self._note_progress(state)
        self.flush_all()

    def flush_all(self) -> None:
        """Write every buffered point, waiting out a database outage (up to retry_s)."""
        retry_database(self._write, "metric flush", self.retry_s)

    def flush(self) -> None:
        """Write what is buffered; while the database is away, keep it for the next flush."""
        try:
            self._write()
        except (OperationalError, InterfaceError) as exc:
            if len(self.buffer) > MAX_BUFFERED_POINTS:
                raise DatabaseGone(
                    f"the database has been unreachable for too long ({len(self.buffer)} "
                    "metric points buffered)"
                ) from exc
            log.warning("metric flush failed, %d points kept: %s", len(self.buffer),
                        str(exc).splitlines()[0])

    def _write(self) -> None:
        # The buffer is swapped under `lock`, and written under `write_lock` only: a flush by
        # the checkpoint thread never holds up the loop's next points while it waits for
        # the database, and flushes still commit one at a time, in order.
        with self.write_lock:
            with self.lock:
                self.last_flush = time.monotonic()
                points, self.buffer = self.buffer, []
                progress, summary = self.progress, copy.deepcopy(self.summary.as_dict())
            try:
                with self.db.transaction() as session:
                    conn = session.connection()
                    missing = {p.name for p in points} - self.key_ids.keys()
                    if missing:
                        self.key_ids.update(metric_repo.metric_key_ids(conn, sorted(missing)))
                    if points:
                        metric_repo.write_points(conn, self.job_id, self.attempt, points,
                                                 self.key_ids)
                    owned = job_repo.record_progress(session, self.job_id, self.attempt,
                                                     progress, summary)
            except BaseException:
                with self.lock:  # nothing was committed: keep every point
                    self.buffer = points + self.buffer
                raise
        if not owned:
            raise LeaseLost(f"attempt {self.attempt} no longer owns job {self.job_id}")


class CheckpointSink:
    """Writes a checkpoint every N epochs and at the end; keeps the last K and the best.

    An epoch's checkpoint is written in the background (worker/behind.py): the loop copies
    its state and goes on while the file is written, synced and recorded, which took 2% of
    a one-minute job's training when it ran in line. One is written at a time; a failure
    (the lease lost, the database gone, the disk full) is raised in the loop at its next
    callback. The last checkpoint and the one a stop writes are written in line."""

    def __init__(
        self, db: Database, root: Path, job_id: uuid.UUID, attempt: int, spec: dict[str, Any],
        normalization: dict[str, torch.Tensor], every_epochs: int, keep: int,
        metrics: MetricSink, monitor: str = "val_loss", resumed_from: int | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        self.db = db
        self.root = root
        self.job_id = job_id
        self.attempt = attempt
        self.spec = spec
        self.normalization = normalization
        self.every_epochs = every_epochs
        self.keep = keep
        self.metrics = metrics
        self.monitor = monitor
        # Retention never deletes the checkpoint this attempt resumed from or wrote last.
        self.resumed_from = resumed_from
        self.written_last: int | None = None
        # A cancel stops the loop like a preemption, but the job ends: no checkpoint for it.
        self.cancelled = cancelled
        self.behind = Behind(f"checkpoint-{job_id}")

    def on_points(self, state: LoopState, points: list[Point]) -> None:
        self.behind.check()

    def on_epoch_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        self.behind.check()
        last = state.epoch == state.epochs  # the final checkpoint is written with test metrics
        if self.every_epochs and state.epoch % self.every_epochs == 0 and not last:
            self.behind.wait()  # the previous one first: one file at a time
            payload = copied(checkpoint_state(state, self.spec, self.normalization, metrics))
            step, epoch, metrics = state.step, state.epoch, dict(metrics)
            self.behind.start(lambda: self._write(payload, step, epoch, metrics))

    def on_train_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        self.behind.wait()
        self.save(state, metrics)

    def on_preempt(self, state: LoopState) -> None:
        if self.cancelled():
            # Not even the one being written: the supervisor removes a file left half
            # written when the process exits (worker/checkpoint_cleanup.py).
            return
        self.behind.wait()
        self.save(state, {})

    def on_exit(self, state: LoopState, error: BaseException | None) -> None:
        """A checkpoint still being written when the loop fails is finished and recorded, not
        cut off by the process's exit: it holds the last weights before the failure."""
        if error is not None and not unwritable(error):
            self.behind.wait()

    def save(self, state: LoopState, metrics: dict[str, float]) -> None:
        payload = checkpoint_state(state, self.spec, self.normalization, metrics)
        self._write(payload, state.step, state.epoch, metrics)

    def _write(self, payload: dict[str, Any], step: int, epoch: int,
               metrics: dict[str, float]) -> None:
        path = checkpoint_path(self.root, str(self.job_id), step)
        sha256, size = write_atomically(payload, path)

        def record() -> list:
            # Every point up to this step is stored before the checkpoint is: a resume from
            # it must find the history complete.
            self.metrics.flush_all()
            return self._record(step, epoch, metrics, path, sha256, size)

        doomed = retry_database(record, "checkpoint", self.metrics.retry_s)
        for checkpoint in doomed:
            Path(checkpoint.path).unlink(missing_ok=True)

    def _record(self, step: int, epoch: int, metrics: dict[str, float], path: Path,
                sha256: str, size: int) -> list:
        with self.db.transaction() as session:
            added = checkpoint_repo.add_checkpoint(
                session, job_id=self.job_id, attempt=self.attempt, step=step,
                epoch=epoch, path=str(path), sha256=sha256, size=size, metrics=metrics,
            )
            if added is None:
                raise LeaseLost(f"attempt {self.attempt} no longer owns job {self.job_id}")
            self.written_last = added
            doomed = self._beyond_retention(checkpoint_repo.list_checkpoints(session, self.job_id))
            checkpoint_repo.delete_checkpoints(session, self.job_id, [c.id for c in doomed])
        return doomed

    def _beyond_retention(self, rows: list) -> list:
        """Rows in step order -> those to delete: all but the last `keep`, the best, and the
        checkpoints this attempt resumed from and wrote last (core/checkpoint_retention.py)."""
        return beyond_retention(rows, self.spec, self.keep,
                                protected=(self.resumed_from, self.written_last))
