"""The client's handling of answers a healthy test API rarely gives: a database that is away
(503), a newer server's extra keys, a corrupted download, a refused key. A scripted HTTP
server on loopback gives them over real HTTP; the client under test is the real one."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from traindock import (
    ChecksumMismatch,
    Client,
    Invalid,
    NotFound,
    TraindockError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from traindock.transport import Transport

JOB_ID = "3f2a6c1e-8b0d-4c5e-9f21-0a1b2c3d4e5f"
JOB = {"id": JOB_ID, "name": "digits-mlp", "state": "succeeded", "attempt": 1,
       "progress": {"step": 63, "epoch": 3, "epochs": 3, "total_steps": 63,
                    "a_newer_progress_key": 1},
       "summary": {"best": {"val_loss": {"value": 0.2, "step": 63, "epoch": 3}}},
       "error": None, "created_at": "2026-11-22T07:28:49.504790Z",
       "started_at": "2026-11-22T07:28:49.685762Z", "finished_at": "2026-11-22T07:28:56Z",
       "spec": {"name": "digits-mlp"}, "model": {}, "max_attempts": 3, "preemptions": 0,
       "cancel_requested": False, "a_key_from_a_newer_server": {"x": 1}}
FILE = b"checkpoint bytes" * 1000


class ScriptedApi:
    """Answers GET path -> the next of its scripted (status, headers, body) answers; the
    last one repeats. Records each request's headers."""

    def __init__(self) -> None:
        self.script: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                api.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                path = self.path.split("?")[0]
                answers = api.script.get(path) or [(404, {}, b'{"detail": "Not Found"}')]
                status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(status)
                for name, value in ({"content-type": "application/json"} | headers).items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, *answers: tuple[int, dict[str, str], object]) -> None:
        self.script[path] = [(s, h, b if isinstance(b, bytes) else json.dumps(b).encode())
                             for s, h, b in answers]


@pytest.fixture
def scripted() -> Iterator[ScriptedApi]:
    api = ScriptedApi()
    yield api
    api.server.shutdown()
    api.server.server_close()


AWAY = (503, {"retry-after": "0.1"}, {"detail": "the database is unreachable; try again shortly"})


def test_wait_waits_out_a_database_that_is_away(scripted):
    scripted.answer(f"/v1/jobs/{JOB_ID}", AWAY, AWAY, (200, {}, JOB))
    with Client(scripted.url) as td:
        job = td.wait(JOB_ID, timeout=10, poll_s=0.05)
    assert job.state == "succeeded" and job.final
    assert len(scripted.requests) == 3


def test_wait_gives_up_after_its_timeout(scripted):
    scripted.answer(f"/v1/jobs/{JOB_ID}", AWAY)
    with Client(scripted.url) as td, pytest.raises(WaitTimeout) as caught:
        td.wait(JOB_ID, timeout=0.3, poll_s=0.05)
    assert "did not end within 0.3 s" in str(caught.value)
    with Client(scripted.url) as td, pytest.raises(Unavailable) as caught:
        td.job(JOB_ID)  # a single read does not wait
    assert caught.value.status == 503 and caught.value.retry_after == 0.1


def test_a_newer_server_s_keys_are_ignored_and_kept(scripted):
    scripted.answer(f"/v1/jobs/{JOB_ID}", (200, {}, JOB))
    with Client(scripted.url) as td:
        job = td.job(JOB_ID)
    assert (job.id, job.progress.step, job.progress.epochs) == (JOB_ID, 63, 3)
    assert job.finished_at is not None and job.finished_at.year == 2026
    assert job.best["val_loss"]["value"] == 0.2
    assert job.raw["a_key_from_a_newer_server"] == {"x": 1}
    # ... and an older server's missing keys take their defaults.
    scripted.answer(f"/v1/jobs/{JOB_ID}", (200, {}, {"id": JOB_ID, "name": "n", "state": "queued"}))
    with Client(scripted.url) as td:
        assert td.job(JOB_ID).progress.step == 0


def _checkpoint(sha256: str) -> list[dict]:
    return [{"id": 3, "step": 63, "epoch": 3, "sha256": sha256, "size": len(FILE),
             "metrics": {}, "created_at": "2026-11-22T07:28:54.9Z", "best": True,
             "filename": "../../etc/digits-mlp-3f2a6c1e-step-63.pt"}]


def test_a_download_that_does_not_match_its_checksum_leaves_nothing(scripted, tmp_path: Path):
    good = hashlib.sha256(FILE).hexdigest()
    scripted.answer(f"/v1/jobs/{JOB_ID}/checkpoints", (200, {}, _checkpoint(good)))
    download = f"/v1/jobs/{JOB_ID}/checkpoints/3/download"
    scripted.answer(download, (200, {"x-checksum-sha256": good,
                                     "content-type": "application/octet-stream"}, FILE[:-1]))
    with Client(scripted.url) as td, pytest.raises(ChecksumMismatch) as caught:
        td.download_checkpoint(JOB_ID, "best", dest=tmp_path)
    assert "nothing was saved" in str(caught.value)
    assert list(tmp_path.iterdir()) == []

    scripted.answer(download, (200, {"x-checksum-sha256": good}, FILE))
    with Client(scripted.url) as td:
        path = td.download_checkpoint(JOB_ID, "best", dest=tmp_path)
    # The server's filename names a file in dest, never a path elsewhere.
    assert path == tmp_path / "digits-mlp-3f2a6c1e-step-63.pt"
    assert path.read_bytes() == FILE and list(tmp_path.iterdir()) == [path]


def test_the_api_key_is_sent_and_a_refusal_says_what_to_set(scripted, monkeypatch):
    scripted.answer(f"/v1/jobs/{JOB_ID}", (401, {}, {"detail": "no valid API key"}))
    monkeypatch.setenv("TRAINDOCK_URL", scripted.url)
    monkeypatch.setenv("TRAINDOCK_API_KEY", "td_from_the_environment")
    with Client() as td, pytest.raises(Unauthorized) as caught:
        td.job(JOB_ID)
    assert "TRAINDOCK_API_KEY" in str(caught.value)
    with Client(api_key="td_given") as td, pytest.raises(Unauthorized):
        td.job(JOB_ID)
    assert [h.get("authorization") for _, h in scripted.requests] == [
        "Bearer td_from_the_environment", "Bearer td_given"]
    monkeypatch.delenv("TRAINDOCK_API_KEY")
    with Client() as td, pytest.raises(Unauthorized):
        td.job(JOB_ID)
    assert "authorization" not in scripted.requests[-1][1]


def test_a_job_reference_that_cannot_be_an_id_is_refused_before_any_request(scripted):
    with Client(scripted.url) as td, pytest.raises(Invalid) as caught:
        td.job("not-a-job")
    assert caught.value.fields == ["job_id"] and scripted.requests == []


def test_an_older_server_without_the_route_is_named_as_such(scripted):
    with Client(scripted.url) as td, pytest.raises(NotFound) as caught:
        td.webhook_secret()  # the scripted API answers FastAPI's own 404 for unknown routes
    assert "has no route /v1/webhooks/secret" in str(caught.value)
    assert "older traindock" in str(caught.value)


def test_a_server_error_is_unavailable_with_what_to_do(scripted):
    scripted.answer(f"/v1/jobs/{JOB_ID}", (500, {"content-type": "text/plain"}, b"boom"))
    with Client(scripted.url) as td, pytest.raises(Unavailable) as caught:
        td.job(JOB_ID)
    assert caught.value.status == 500
    assert str(caught.value).startswith("the API answered 500 Internal Server Error to GET ")
    assert str(caught.value).endswith("; try again shortly")


def test_an_error_carries_the_answer_for_a_caller_s_own_wording(scripted):
    detail = [{"field": "query.limit", "message": "query.limit: at most 500", "type": "range"}]
    scripted.answer("/v1/jobs", (422, {"x-request-id": "trace-7"}, {"detail": detail}))
    with Client(scripted.url) as td, pytest.raises(Invalid) as caught:
        next(td.jobs(page_size=501))
    error = caught.value
    assert error.detail == detail and error.fields == ["query.limit"]
    assert error.response is not None and error.response.status_code == 422
    assert error.request_id == "trace-7"
    with Client(f"http://127.0.0.1:{free_port()}") as td, pytest.raises(Unavailable) as caught:
        td.job(JOB_ID)
    # no answer: nothing to carry but what failed, as httpx said it
    assert caught.value.response is None and caught.value.request_id is None
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_transport_download_checks_the_header_and_leaves_nothing_on_a_mismatch(scripted,
                                                                                tmp_path: Path):
    good, bad = hashlib.sha256(FILE).hexdigest(), hashlib.sha256(b"other").hexdigest()
    scripted.answer("/file", (200, {"x-checksum-sha256": bad}, FILE))
    target = tmp_path / "file.bin"
    with Transport(scripted.url) as transport, pytest.raises(ChecksumMismatch) as caught:
        transport.download("/file", target)  # no sha256 given: the header alone is checked
    assert (caught.value.actual, caught.value.header, caught.value.expected) == (good, bad, None)
    assert "the X-Checksum-Sha256 header's" in str(caught.value)
    assert list(tmp_path.iterdir()) == []

    scripted.answer("/file", (200, {}, FILE))  # no header: the caller's sha256 is checked
    with Transport(scripted.url) as transport:
        with pytest.raises(ChecksumMismatch):
            transport.download("/file", target, bad)
        assert transport.download("/file", target, good) == good
    assert target.read_bytes() == FILE and list(tmp_path.iterdir()) == [target]
    with Transport(scripted.url) as transport, pytest.raises(TraindockError) as caught:
        transport.download("/file", tmp_path / "no-such-folder" / "file.bin")
    assert str(caught.value).startswith(f"cannot write {tmp_path / 'no-such-folder'}")
