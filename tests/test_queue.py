"""Publishing a job id: over real Redis and the embedded file broker, and with the broker down."""

from __future__ import annotations

import json

import redis

from core.queue import DEFAULT_QUEUE, TRAIN_TASK, make_celery, publish_job
from core.settings import Settings
from tests.conftest import free_port


def test_publish_puts_only_the_job_id_on_redis(settings: Settings):
    client = redis.Redis.from_url(settings.broker_url)
    queue = f"{DEFAULT_QUEUE}-probe"
    app = make_celery(settings)
    app.send_task(TRAIN_TASK, args=["abc"], queue=queue)
    assert client.llen(queue) == 1
    message = json.loads(client.lpop(queue))
    assert message["headers"]["task"] == TRAIN_TASK
    assert message["headers"]["argsrepr"] == "['abc']"
    assert publish_job(app, "0f8e6c1c-0000-4000-8000-000000000000", settings) is True


def test_publish_to_a_dead_broker_returns_false_quickly(settings: Settings):
    import time

    dead = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0",
                                       "publish_timeout_s": 0.5})
    started = time.monotonic()
    assert publish_job(make_celery(dead), "some-job", dead) is False
    assert time.monotonic() - started < 10


def test_the_file_broker_keeps_everything_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = Settings(broker_url="filesystem://", data_dir=tmp_path / "data")
    assert publish_job(make_celery(local), "job-1", local) is True
    queued = list((tmp_path / "data" / "broker" / "queue").iterdir())
    assert len(queued) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
