"""Publishing a job id: over real Redis and the embedded file broker, and with the broker down."""

from __future__ import annotations

import json

import redis

from core.queue import (
    DEFAULT_QUEUE,
    TRAIN_TASK,
    BackgroundPublisher,
    Publisher,
    make_celery,
    pending_job_ids,
    publish_job,
)
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


def test_the_publisher_pauses_after_a_failure(settings: Settings):
    import time

    dead = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0"})
    publisher = Publisher(dead, pause_s=60)
    assert publisher.publish("a") is False
    started = time.monotonic()
    assert publisher.publish("b") is False
    assert time.monotonic() - started < 0.05  # paused: the broker was not tried again


def test_the_background_publisher_hands_over_at_once_and_publishes_every_id(
        settings: Settings):
    import time

    dead = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0",
                                       "publish_timeout_s": 0.5})
    stuck = BackgroundPublisher(Publisher(dead, pause_s=0))
    started = time.monotonic()
    for job_id in ("a", "b", "c"):
        stuck.publish(job_id)
    assert time.monotonic() - started < 0.05  # the request never waits on the broker

    base = settings.broker_url.rsplit("/", 1)[0]
    isolated = settings.model_copy(update={"broker_url": f"{base}/14"})
    redis.Redis.from_url(isolated.broker_url).flushdb()
    ids = {f"3333333{i}-3333-4333-8333-333333333333" for i in range(5)}
    live = BackgroundPublisher(Publisher(isolated))
    for job_id in sorted(ids):
        live.publish(job_id)
    deadline = time.monotonic() + 10
    while pending_job_ids(isolated) != ids and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pending_job_ids(isolated) == ids
    redis.Redis.from_url(isolated.broker_url).flushdb()


def test_pending_job_ids_sees_waiting_messages_on_redis(settings: Settings):
    base = settings.broker_url.rsplit("/", 1)[0]
    isolated = settings.model_copy(update={"broker_url": f"{base}/15"})
    client = redis.Redis.from_url(isolated.broker_url)
    client.flushdb()
    assert pending_job_ids(isolated) == set()
    assert publish_job(make_celery(isolated), "11111111-1111-4111-8111-111111111111", isolated)
    assert pending_job_ids(isolated) == {"11111111-1111-4111-8111-111111111111"}
    client.flushdb()


def test_pending_job_ids_sees_waiting_messages_in_the_file_broker(tmp_path):
    local = Settings(broker_url="filesystem://", data_dir=tmp_path)
    assert publish_job(make_celery(local), "22222222-2222-4222-8222-222222222222", local)
    assert pending_job_ids(local) == {"22222222-2222-4222-8222-222222222222"}


def test_pending_job_ids_is_none_when_the_broker_is_down(settings: Settings):
    dead = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0",
                                       "publish_timeout_s": 0.5})
    assert pending_job_ids(dead) is None
