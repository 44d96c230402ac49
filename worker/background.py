"""Threads that run beside the worker's task loop: the reaper, the worker's heartbeat and
the webhook deliveries."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable

from core.db import Database
from core.queue import Publisher
from core.reaper import reap
from core.repo import workers as worker_repo
from core.settings import Settings
from worker.supervisor import CURRENT_JOB
from worker.webhooks import deliver_due

log = logging.getLogger(__name__)

WEBHOOK_PASS_S = 1.0  # how often a worker sends the due webhook deliveries


def visible_devices() -> list[str]:
    """What this worker trains on, without initialising CUDA in the worker process."""
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        return [f"cuda:{d}" for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=5, check=True).stdout
            names = [line.strip() for line in out.splitlines() if line.strip()]
            if names:
                return [f"cuda:{i} {name}" for i, name in enumerate(names)]
        except (OSError, subprocess.SubprocessError):
            pass
    return ["cpu"]


class Every(threading.Thread):
    """Call `action` every `interval_s` seconds until stopped; errors are logged, not fatal."""

    def __init__(self, name: str, interval_s: float, action: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self.interval_s = interval_s
        self.action = action
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.action()
            except Exception as exc:
                log.warning("%s failed: %s", self.name, (str(exc) or repr(exc)).splitlines()[0])
            self.stopped.wait(self.interval_s)

    def stop(self) -> None:
        self.stopped.set()


class Background:
    """The reaper, the heartbeat and the webhook deliveries of one worker process."""

    def __init__(self, db: Database, settings: Settings, publisher: Publisher, worker_name: str
                 ) -> None:
        self.db = db
        self.settings = settings
        self.name = worker_name
        self.devices = visible_devices()
        self.threads = [
            Every("reaper", settings.reaper_interval_s,
                  lambda: reap(db, publisher, settings)),
            Every("heartbeat", settings.worker_heartbeat_s, self.report),
            Every("webhooks", WEBHOOK_PASS_S, lambda: deliver_due(db, settings)),
        ]

    def report(self) -> None:
        with self.db.transaction() as session:
            worker_repo.report_worker(
                session, name=self.name, host=socket.gethostname(), pid=os.getpid(),
                devices=self.devices, current_job_id=CURRENT_JOB.job_id,
            )

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        for thread in self.threads:
            thread.stop()
        try:
            with self.db.transaction() as session:
                worker_repo.mark_worker_stopped(session, self.name)
        except Exception as exc:  # the database may be the reason we are stopping
            log.warning("could not mark worker %s stopped: %s", self.name, exc)
