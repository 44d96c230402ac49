"""Webhooks on real processes: a job's events reach a receiver signed, a receiver that answers
500 sees the delivery again, the deliveries are listed, and nothing is sent to a refused
address."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.db import Database, make_engine
from core.repo import jobs as job_repo
from core.repo import webhooks as webhook_repo
from core.settings import Settings
from core.webhooks.signing import new_secret, signature, verify
from tests.conftest import load_example, start_api, wait_for_state
from worker.webhooks import deliver_due


class Receiver:
    """A webhook receiver on loopback: records each delivery, answers with `statuses` in turn
    (then 204)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?team=ml"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.seen]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(statuses: list[int] | None = None) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _spec(url: str, events: list[str] | None = None) -> dict:
    spec = load_example("digits-mlp") | {"training": {"epochs": 1, "batch_size": 64}}
    spec["notify"] = {"url": url} | ({"events": events} if events else {})
    return spec


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.1)


def test_a_job_s_events_arrive_signed_and_a_500_is_retried(client, worker, receiver):
    hook = receiver([500])  # the first delivery fails
    job = client.post("/v1/jobs", json=_spec(hook.url)).json()
    assert job["spec"]["notify"]["events"] == ["queued", "running", "succeeded", "failed",
                                               "cancelled", "pruned"]
    wait_for_state(client, job["id"], {"succeeded"})
    _wait_for(lambda: len(hook.seen) >= 4)  # three events, the first one sent twice

    # The first delivery to arrive (queued, usually; running when another worker's pass sent
    # it first: workers deliver side by side) was answered 500, then sent again with the
    # same id (a retry may come after later events: receivers order by the body's
    # timestamp); each event arrives.
    ids = [headers["webhook-id"] for headers, _ in hook.seen]
    events = hook.events()
    assert sorted(set(events)) == ["job.queued", "job.running", "job.succeeded"]
    first = events[0]
    assert events.count(first) == 2 and len(hook.seen) == 4
    assert ids[0] == ids[events.index(first, 1)]
    assert len(set(ids)) == 3
    secret = client.get("/v1/webhooks/secret").json()["secret"]
    for headers, body in hook.seen:
        assert verify(secret, headers, body, time.time()), headers
        assert not verify(new_secret(), headers, body, time.time())
        assert not verify(secret, headers, body + b" ", time.time())
        assert headers["webhook-id"].startswith("msg_")
    data = next(json.loads(body)["data"] for _, body in hook.seen
                if json.loads(body)["type"] == "job.succeeded")
    assert (data["id"], data["state"], data["attempt"]) == (job["id"], "succeeded", 1)

    deliveries = client.get(f"/v1/jobs/{job['id']}/deliveries").json()
    assert [d["event"] for d in deliveries] == ["queued", "running", "succeeded"]
    retried = next(d for d in deliveries if f"job.{d['event']}" == first)
    assert (retried["attempts"], retried["last_status"]) == (2, 204)
    assert all(d["delivered_at"] and d["next_attempt_at"] is None for d in deliveries)


def test_only_the_events_asked_for_are_sent(client, worker, receiver):
    hook = receiver()
    job = client.post("/v1/jobs", json=_spec(hook.url, ["succeeded", "failed"])).json()
    wait_for_state(client, job["id"], {"succeeded"})
    _wait_for(lambda: hook.events())
    time.sleep(1.5)  # a pass or two more: nothing else comes
    assert hook.events() == ["job.succeeded"]


def test_a_private_destination_is_refused_at_submission(service_env, tmp_path, receiver):
    hook = receiver()
    api, url = start_api(service_env, tmp_path, TRAINDOCK_WEBHOOK_ALLOW_PRIVATE="false")
    try:
        import httpx

        for target in (hook.url, "http://localhost:9/x", "http://[::1]/x",
                       "http://169.254.169.254/latest/meta-data"):
            response = httpx.post(f"{url}/v1/jobs/validate", json=_spec(target), timeout=30)
            assert response.status_code == 422, (target, response.text)
            detail = response.json()["detail"]
            assert [d["field"] for d in detail] == ["notify.url"]
            assert "TRAINDOCK_WEBHOOK_ALLOW_PRIVATE" in detail[0]["message"]
        bad = httpx.post(f"{url}/v1/jobs/validate", json=_spec("ftp://example.com/x"),
                         timeout=30)
        assert bad.status_code == 422
        creds = httpx.post(f"{url}/v1/jobs/validate",
                           json=_spec("https://user:pw@example.com/x"), timeout=30)
        assert creds.status_code == 422 and "credentials" in creds.text
    finally:
        api.stop()
    assert hook.seen == []


def test_a_delivery_to_a_refused_address_is_given_up_and_never_sent(fresh_database, receiver):
    """The check is made again at delivery: a destination that became private (DNS changed,
    or the setting was turned off) is never contacted."""
    hook = receiver()
    settings = Settings(database_url=fresh_database, webhook_allow_private=False)
    db = Database(make_engine(settings))
    try:
        with db.transaction() as session:
            job = job_repo.create_job(session, name="n", spec=_spec(hook.url), max_attempts=1,
                                      model_summary={}, total_steps=1)
        assert deliver_due(db, settings) == 0
        with db.transaction() as session:
            [delivery] = webhook_repo.list_for_job(session, job.id)
        assert delivery.given_up_at is not None and delivery.last_status is None
        assert delivery.last_error.startswith("refused: '127.0.0.1' resolves to 127.0.0.1")
        assert hook.seen == []
        # Allowed, a new event is delivered by the same pass.
        allowed = settings.model_copy(update={"webhook_allow_private": True})
        with db.transaction() as session:
            job_repo.request_cancel(session, job.id)
        assert deliver_due(db, allowed) == 1
        assert hook.events() == ["job.cancelled"]
    finally:
        db.engine.dispose()


def test_retries_back_off_and_give_up(fresh_database, receiver):
    hook = receiver([503] * 10)
    settings = Settings(database_url=fresh_database, webhook_allow_private=True,
                        webhook_retry_base_s=0.2, webhook_give_up_s=1.0)
    db = Database(make_engine(settings))
    try:
        with db.transaction() as session:
            job = job_repo.create_job(session, name="n", spec=_spec(hook.url), max_attempts=1,
                                      model_summary={}, total_steps=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            deliver_due(db, settings)
            with db.transaction() as session:
                [delivery] = webhook_repo.list_for_job(session, job.id)
            if delivery.given_up_at is not None:
                break
            time.sleep(0.05)
        assert delivery.given_up_at is not None
        assert delivery.last_status == 503 and delivery.last_error == "answered 503"
        # 0.2, 0.4 s and so on: a few attempts in the second, not one per pass.
        assert 2 <= delivery.attempts <= 4, delivery.attempts
        assert len(hook.seen) == delivery.attempts
    finally:
        db.engine.dispose()


def test_the_signature_is_the_standard_webhooks_one():
    """The published example of the Standard Webhooks spec, signed the same way."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")


def test_each_owners_deliveries_are_signed_with_that_owners_secret(service_env, fresh_database,
                                                                   tmp_path, receiver):
    """With keys on, a delivery of ana's job verifies with ana's secret and not with ben's;
    ben cannot list ana's deliveries."""
    import httpx

    from tests.conftest import make_api_key

    hook = receiver()
    env = service_env | {"TRAINDOCK_DATABASE_URL": fresh_database,
                         "TRAINDOCK_DATA_DIR": str(tmp_path / "data")}
    api, url = start_api(env, tmp_path, TRAINDOCK_AUTH="on")
    settings = Settings(database_url=fresh_database, webhook_allow_private=True)
    db = Database(make_engine(settings))
    try:
        def client(owner: str) -> httpx.Client:
            token = make_api_key(settings, "read,submit", owner=owner)
            return httpx.Client(base_url=url, timeout=30,
                                headers={"authorization": f"Bearer {token}"})

        with client("ana") as ana, client("ben") as ben:
            job = ana.post("/v1/jobs", json=_spec(hook.url, ["queued"])).json()
            assert deliver_due(db, settings) == 1
            [(headers, body)] = hook.seen
            ana_secret = ana.get("/v1/webhooks/secret").json()["secret"]
            ben_secret = ben.get("/v1/webhooks/secret").json()["secret"]
            assert ana_secret != ben_secret
            assert verify(ana_secret, headers, body, time.time())
            assert not verify(ben_secret, headers, body, time.time())
            assert json.loads(body)["data"]["id"] == job["id"]
            assert ben.get(f"/v1/jobs/{job['id']}/deliveries").status_code == 404
            assert len(ana.get(f"/v1/jobs/{job['id']}/deliveries").json()) == 1
    finally:
        db.engine.dispose()
        api.stop()
