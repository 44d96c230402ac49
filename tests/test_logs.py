"""GET /v1/jobs/{id}/logs against the real API and worker: the log of a job that succeeded, of
one that crashed, of a job with two attempts (the first one's child killed), followed while
it runs; and the answers to what has no log."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session

from api.routes.logs import DEFAULT_MAX_BYTES
from core.attempt_logs import attempt_log_path, tail_offset
from core.db import make_engine
from core.queue import Publisher
from core.repo import jobs as job_repo
from tests.conftest import ROOT, load_example, training_children, wait_for_state

FINAL = {"succeeded", "failed", "cancelled"}
READY = "ready to train after"


@pytest.fixture(scope="module")
def engine(settings):
    engine = make_engine(settings)
    yield engine
    engine.dispose()


def small_job(name: str, **training: int) -> dict:
    spec = load_example("digits-mlp") | {"name": name}
    spec["training"] = spec["training"] | {"epochs": 1} | training
    return spec


def submit(client: httpx.Client, spec: dict) -> str:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_for_log(client: httpx.Client, job_id: str, text: str, attempt: int,
                 timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/v1/jobs/{job_id}/logs", params={"attempt": attempt})
        if response.status_code == 200 and text in response.text:
            return response.text
        time.sleep(0.3)
    raise TimeoutError(f"{text!r} not in attempt {attempt}'s log of {job_id} after {timeout}s")


class Follower(threading.Thread):
    """GET ...?follow=true in a thread: what arrived, and whether the answer has ended."""

    def __init__(self, url: str, job_id: str, **params: object) -> None:
        super().__init__(daemon=True)
        self.url, self.job_id, self.params = url, job_id, params | {"follow": "true"}
        self.text = ""
        self.headers: httpx.Headers | None = None
        self.started_reading = threading.Event()
        self.start()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=httpx.Timeout(30, read=None)) as http, \
                http.stream("GET", f"/v1/jobs/{self.job_id}/logs", params=self.params) as r:
            assert r.status_code == 200, r.read()
            self.headers = r.headers
            self.started_reading.set()
            for chunk in r.iter_text():
                self.text += chunk

    def ended_within(self, seconds: float) -> bool:
        self.join(seconds)
        return not self.is_alive()


@pytest.fixture(scope="module")
def succeeded(api_url: str, worker) -> str:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        job_id = submit(client, small_job("logs-ok"))
        assert wait_for_state(client, job_id, FINAL)["state"] == "succeeded"
    return job_id


def test_a_succeeded_jobs_log_has_its_start_up_line(succeeded, client, settings):
    response = client.get(f"/v1/jobs/{succeeded}/logs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["X-Log-Attempt"] == "1"
    assert response.headers["X-Log-Attempts"] == "1"
    assert response.headers["X-Log-Start"] == "0"
    assert READY in response.text
    assert "trained in" in response.text
    on_disk = attempt_log_path(settings.log_dir, uuid.UUID(succeeded), 1).read_text()
    assert response.text == on_disk
    assert response.headers["X-Log-Size"] == str(len(on_disk.encode()))
    # A job that has ended: following it sends the log and ends.
    assert client.get(f"/v1/jobs/{succeeded}/logs", params={"follow": "true"}).text == on_disk


def test_tail_and_the_byte_cap_keep_the_last_whole_lines(succeeded, client):
    whole = client.get(f"/v1/jobs/{succeeded}/logs").text
    lines = whole.splitlines(keepends=True)
    assert len(lines) >= 2  # the start-up breakdown, "trained in ..."
    last = client.get(f"/v1/jobs/{succeeded}/logs", params={"tail": 1})
    assert last.text == lines[-1]
    assert int(last.headers["X-Log-Start"]) == len("".join(lines[:-1]).encode())
    # A cap inside the second-to-last line starts at the last line.
    cap = len(lines[-1].encode()) + 5
    capped = client.get(f"/v1/jobs/{succeeded}/logs", params={"max_bytes": cap})
    assert capped.text == lines[-1]
    many = client.get(f"/v1/jobs/{succeeded}/logs", params={"tail": 100_000})
    assert many.text == whole


def test_a_crashed_jobs_log_has_the_traceback(client, worker, engine, settings):
    """An uploaded dataset whose files are gone (the row is written here, past the API's
    checks): the training process crashes, and its log holds the whole traceback."""
    spec = small_job("logs-crash")
    spec["dataset"] = {"name": "logs-vanished", "sha256": "0" * 64}
    with Session(engine) as session, session.begin():
        job_id = str(job_repo.create_job(session, name="logs-crash", spec=spec, max_attempts=1,
                                         model_summary={}, total_steps=10).id)
    assert Publisher(settings).publish(job_id)
    job = wait_for_state(client, job_id, FINAL)
    assert job["state"] == "failed"
    text = client.get(f"/v1/jobs/{job_id}/logs").text
    assert "training crashed" in text
    assert "Traceback (most recent call last):" in text
    assert job["error"].removeprefix("training crashed: ") in text

    # Its file gone (or an API that does not share the workers' data directory):
    attempt_log_path(settings.log_dir, uuid.UUID(job_id), 1).unlink()
    response = client.get(f"/v1/jobs/{job_id}/logs")
    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"job {job_id}: no attempt left a log in this server's data directory (attempts with "
        "a log: none); the API must share TRAINDOCK_DATA_DIR with the workers")
    response = client.get(f"/v1/jobs/{job_id}/logs", params={"attempt": 1})
    assert response.status_code == 404
    assert response.json()["detail"].startswith(f"job {job_id}: attempt 1 left no log in ")


def test_no_log_answers_name_what_exists(client, engine, succeeded):
    unknown = uuid.uuid4()
    response = client.get(f"/v1/jobs/{unknown}/logs")
    assert response.status_code == 404
    assert response.json() == {"detail": f"no job with id {unknown}"}

    response = client.get(f"/v1/jobs/{succeeded}/logs", params={"attempt": 2})
    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"job {succeeded} has no attempt 2; its attempts are 1 to 1, and those with a log: 1")

    for bad in ("0", "../../etc/passwd", "1.5"):
        response = client.get(f"/v1/jobs/{succeeded}/logs", params={"attempt": bad})
        assert response.status_code == 422, bad
        assert "attempt" in response.json()["detail"][0]["message"]
    response = client.get(f"/v1/jobs/{succeeded}/logs", params={"tail": 0})
    assert response.status_code == 422
    assert "tail" in response.json()["detail"][0]["message"]

    # Created without a message to the broker: queued, and no attempt has started.
    with Session(engine) as session, session.begin():
        queued = str(job_repo.create_job(session, name="logs-queued",
                                         spec=load_example("digits-mlp"), max_attempts=1,
                                         model_summary={}, total_steps=10).id)
    response = client.get(f"/v1/jobs/{queued}/logs")
    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"job {queued} has no log yet: it is queued and no attempt has started")
    assert client.post(f"/v1/jobs/{queued}/cancel").status_code == 202
    response = client.get(f"/v1/jobs/{queued}/logs", params={"follow": "true"})
    assert response.status_code == 404
    assert "it is cancelled and no attempt has started" in response.json()["detail"]


def test_the_schema_documents_the_answers(client):
    operation = client.get("/openapi.json").json()["paths"]["/v1/jobs/{job_id}/logs"]["get"]
    # (401 and 403 only where keys are asked for: this API runs with TRAINDOCK_AUTH=off.)
    assert set(operation["responses"]) == {"200", "404", "422", "503"}
    assert list(operation["responses"]["200"]["content"]) == ["text/plain"]
    assert set(operation["responses"]["200"]["headers"]) == {
        "X-Log-Attempt", "X-Log-Attempts", "X-Log-Size", "X-Log-Start"}
    assert {p["name"] for p in operation["parameters"]} == {
        "job_id", "attempt", "tail", "max_bytes", "follow"}


@pytest.fixture(scope="module")
def retried(api_url: str, worker) -> Iterator[str]:
    """A long job whose first attempt's training process is killed: the worker retries it."""
    with httpx.Client(base_url=api_url, timeout=30) as client:
        job_id = submit(client, small_job("logs-retried", epochs=5000, batch_size=32))
        yield job_id
        client.post(f"/v1/jobs/{job_id}/cancel")
        wait_for_state(client, job_id, FINAL, timeout=60)


def test_attempts_are_followed_until_they_end_and_chosen_by_number(retried, client, api_url,
                                                                    settings, worker):
    first = wait_for_log(client, retried, READY, attempt=1)
    follower = Follower(api_url, retried)
    assert follower.started_reading.wait(30)
    assert follower.headers["X-Log-Attempt"] == "1"
    assert not follower.ended_within(2), "the answer ended while attempt 1 was running"

    [child] = training_children(retried, worker.log())
    child.kill()  # as the OOM killer would: the worker retries the job
    assert follower.ended_within(60), "following attempt 1 did not end with it"
    assert READY in follower.text
    assert follower.text.startswith(first)

    second = wait_for_log(client, retried, READY, attempt=2)
    latest = client.get(f"/v1/jobs/{retried}/logs")
    assert latest.headers["X-Log-Attempt"] == "2"
    assert latest.headers["X-Log-Attempts"] == "1,2"
    assert latest.text.startswith(second)
    one = client.get(f"/v1/jobs/{retried}/logs", params={"attempt": 1})
    assert one.headers["X-Log-Attempt"] == "1"
    assert one.text == attempt_log_path(settings.log_dir, uuid.UUID(retried), 1).read_text()
    assert one.text != latest.text
    response = client.get(f"/v1/jobs/{retried}/logs", params={"attempt": 3})
    assert response.status_code == 404
    assert response.json()["detail"].endswith("its attempts are 1 to 2, and those with a "
                                              "log: 1, 2")
    # Attempt 1 is over: following it sends its log and ends at once.
    assert Follower(api_url, retried, attempt=1).ended_within(30)

    # The running attempt, followed until a cancel ends it: everything it wrote arrives.
    follower = Follower(api_url, retried)
    assert follower.started_reading.wait(30)
    assert not follower.ended_within(2), "the answer ended while attempt 2 was running"
    assert client.post(f"/v1/jobs/{retried}/cancel").status_code == 202
    assert follower.ended_within(60), "following attempt 2 did not end with the job"
    assert wait_for_state(client, retried, FINAL)["state"] == "cancelled"
    on_disk = attempt_log_path(settings.log_dir, uuid.UUID(retried), 2).read_text()
    assert follower.headers["X-Log-Attempt"] == "2"
    assert follower.text == on_disk


@pytest.mark.parametrize(("text", "lines", "max_bytes", "expected"), [
    (b"a\nb\nc\n", None, 100, b"a\nb\nc\n"),
    (b"a\nb\nc\n", 2, 100, b"b\nc\n"),
    (b"a\nb\nc", 2, 100, b"b\nc"),  # a last line without its newline yet
    (b"a\nb\nc\n", 5, 100, b"a\nb\nc\n"),
    (b"aaaa\nbb\ncc\n", None, 7, b"bb\ncc\n"),  # the cap cuts "aaaa": start at the next line
    (b"aaaa\nbb\ncc\n", None, 6, b"bb\ncc\n"),  # the cap falls on a line start
    (b"aaaa\nbb\ncc\n", None, 5, b"cc\n"),
    (b"aaaa\nbb\ncc\n", 1, 6, b"cc\n"),
    (b"aaaaaaaa\n", None, 4, b"aaa\n"),  # one line longer than the cap: its end
    (b"", 3, 100, b""),
    (b"x" * 200_000 + b"\n" + b"y\n" * 3, 2, 10**6, b"y\ny\n"),  # across read blocks
])
def test_tail_offset(tmp_path, text, lines, max_bytes, expected):
    path = tmp_path / "attempt-1.log"
    path.write_bytes(text)
    with open(path, "rb") as file:
        start = tail_offset(file, len(text), lines, max_bytes)
    assert text[start:] == expected


def test_the_docs_give_the_default_cap_and_readme_says_where_to_look():
    api_doc = (ROOT / "docs" / "api.md").read_text()
    assert f"| `max_bytes` | {DEFAULT_MAX_BYTES} (1 MiB) |" in api_doc
    assert "[`GET /v1/jobs/{id}/logs`](#get-v1jobsidlogs)" in api_doc
    failing = (ROOT / "README.md").read_text().split("## When things fail")[1].split("\n## ")[0]
    assert "`traindock logs JOB`" in failing and "/v1/jobs/{id}/logs" in failing
    assert "## logs" in (ROOT / "docs" / "cli.md").read_text()
    assert "**Logs**" in (ROOT / "docs" / "dashboard.md").read_text()
