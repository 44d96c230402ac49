"""Task names, queue names and the Celery configuration shared by the publisher and the worker.

The API publishes by task *name* and never imports worker code; the message carries only
the job id. The database is the record of a job: a lost or duplicated message is harmless
because the worker's claim is atomic.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery

from core.settings import Settings

TRAIN_TASK = "traindock.train_job"
DEFAULT_QUEUE = "traindock"

log = logging.getLogger(__name__)


def celery_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "task_default_queue": DEFAULT_QUEUE,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Long jobs: take one message at a time, acknowledge after the task returns so that
        # a message held by a worker that dies is delivered again (the claim deduplicates).
        "worker_prefetch_multiplier": 1,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {},
    }
    if settings.broker_url.startswith("filesystem://"):
        folder, processed, control = (
            settings.broker_dir / "queue", settings.broker_dir / "processed",
            settings.broker_dir / "control",
        )
        for path in (folder, processed, control):
            path.mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "processed_folder": str(processed),
            # Without this the transport writes its control exchange into the cwd.
            "control_folder": str(control),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    else:
        config["broker_transport_options"] = {
            "socket_connect_timeout": settings.publish_timeout_s,
            "socket_timeout": settings.publish_timeout_s,
            # Jobs run for hours; redelivery is deduplicated by the claim anyway.
            "visibility_timeout": 24 * 3600,
        }
    return config


def make_celery(settings: Settings, name: str = "traindock") -> Celery:
    app = Celery(name)
    app.conf.update(celery_config(settings))
    return app


def publish_job(app: Celery, job_id: str, settings: Settings) -> bool:
    """Send the wake-up message for a job. Returns False (and logs) when the broker is down:
    the job row stays queued and is published again later, so the caller never fails."""
    try:
        app.send_task(
            TRAIN_TASK,
            args=[job_id],
            # The task id is the job id, so that the reaper can tell which jobs have a message.
            task_id=job_id,
            queue=DEFAULT_QUEUE,
            retry=True,
            retry_policy={
                "max_retries": 1,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
        )
        return True
    except Exception as exc:  # the broker's error types vary by transport
        log.warning("could not publish job %s: %s", job_id, exc)
        return False


class Publisher:
    """Publishes job ids, and stops trying for `pause_s` after a failure, so that a broker
    that hangs costs one timeout rather than one per request. A job not published stays
    queued in the database and the reaper publishes it once the broker answers."""

    def __init__(self, settings: Settings, app: Celery | None = None, pause_s: float = 5.0) -> None:
        self.settings = settings
        self.app = app or make_celery(settings)
        self.pause_s = pause_s
        self.paused_until = 0.0

    def publish(self, job_id: str) -> bool:
        if time.monotonic() < self.paused_until:
            return False
        if publish_job(self.app, job_id, self.settings):
            return True
        self.paused_until = time.monotonic() + self.pause_s
        return False


class BackgroundPublisher:
    """Publishes from a thread of its own, so that a request never waits on the broker. The
    job is committed before it is handed over; one the process dies before publishing stays
    queued until the reaper publishes it (republish_after_s). One thread publishing in turn
    also costs the API less than a thread-pool hop per submission."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self._pending: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()

    def publish(self, job_id: str) -> None:
        self._pending.put(job_id)

    def _run(self) -> None:
        while True:
            job_id = self._pending.get()
            try:
                self.publisher.publish(job_id)
            except Exception:  # publish_job logs the broker's errors; this is anything else
                log.exception("publishing job %s failed", job_id)


REDIS_PRIORITY_SEPARATOR = "\x06\x16"
REDIS_PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's defaults


def pending_job_ids(settings: Settings) -> set[str] | None:
    """Job ids that have a message in the broker: waiting in the queue or delivered and not
    yet acknowledged. None when the broker cannot be read (then nothing is re-published)."""
    try:
        if settings.broker_url.startswith("filesystem://"):
            return _pending_in_folder(settings.broker_dir / "queue")
        return _pending_in_redis(settings)
    except Exception as exc:  # the broker is down or unreadable: decide nothing
        log.warning("cannot read the broker's queue: %s", exc)
        return None


def _message_task_id(raw: bytes | str) -> str | None:
    try:
        payload = json.loads(raw)
    except ValueError:
        return None
    if isinstance(payload, list):  # unacked entries: [message, exchange, routing_key]
        payload = payload[0] if payload else {}
    headers = payload.get("headers") if isinstance(payload, dict) else None
    return headers.get("id") if isinstance(headers, dict) else None


def _pending_in_redis(settings: Settings) -> set[str]:
    import redis

    client = redis.Redis.from_url(settings.broker_url, socket_timeout=settings.publish_timeout_s,
                                  socket_connect_timeout=settings.publish_timeout_s)
    try:
        raws: list[bytes] = []
        for step in REDIS_PRIORITY_STEPS:
            suffix = f"{REDIS_PRIORITY_SEPARATOR}{step}" if step else ""
            name = f"{DEFAULT_QUEUE}{suffix}"
            raws.extend(client.lrange(name, 0, -1))
        raws.extend(client.hvals("unacked"))
    finally:
        client.close()
    return {tid for tid in map(_message_task_id, raws) if tid}


def _pending_in_folder(folder: Path) -> set[str]:
    ids = set()
    for path in folder.glob("*.msg"):
        try:
            tid = _message_task_id(path.read_bytes())
        except OSError:  # consumed while we looked
            continue
        if tid:
            ids.add(tid)
    return ids
