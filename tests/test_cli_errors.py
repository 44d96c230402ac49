"""The terminal client's words for the API's refusals and failures, which it words itself from
the Python client's exceptions (cli/http.py): advice in terms of its options, exit 1 when the
API said no, 2 when it could not answer. A stand-in server gives each answer on cue."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import ROOT

JOB_ID = "5e1f0c3a-1b2c-4d5e-8f90-0123456789ab"


def traindock(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "TRAINDOCK_CONFIG": "/nonexistent"}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def answering() -> Iterator[tuple[str, list[tuple[int, dict[str, str], bytes]]]]:
    """A server giving every request the last answer put in the list it yields."""
    answers: list[tuple[int, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            status, headers, body = answers[-1]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answers
    server.shutdown()
    server.server_close()


def detail(text: object) -> bytes:
    return json.dumps({"detail": text}).encode()


JSON = {"content-type": "application/json"}


def test_refusals_are_exit_1_in_the_servers_words(answering):
    url, answers = answering
    answers.append((403, JSON, detail("this key may only read; it needs the submit scope")))
    forbidden = traindock("show", JOB_ID, "--url", url, "--token", "td_x")
    assert (forbidden.returncode, forbidden.stderr) == (
        1, "error: this key may only read; it needs the submit scope\n")
    answers.append((401, JSON, detail("the API key is not valid")))
    refused = traindock("show", JOB_ID, "--url", url, "--token", "td_x")
    assert (refused.returncode, refused.stderr.splitlines()) == (1, [
        "error: the API key is not valid",
        "error: (the key sent: pass --token, or set TRAINDOCK_API_KEY, or api_key in "
        "~/.config/traindock/config.toml)"])
    answers.append((429, JSON | {"retry-after": "2"}, detail("over 5 requests per second")))
    limited = traindock("show", JOB_ID, "--url", url)
    assert (limited.returncode, limited.stderr) == (1, "error: over 5 requests per second\n")
    answers.append((404, JSON, detail("Not Found")))
    old = traindock("show", JOB_ID, "--url", url)
    assert old.returncode == 1 and old.stderr == (
        f"error: the API has no route /v1/jobs/{JOB_ID}; is the server an older traindock "
        "than this client?\n")


def test_failures_on_the_servers_side_are_exit_2(answering):
    url, answers = answering
    answers.append((502, {"content-type": "text/html"}, b"<html>bad gateway</html>"))
    result = traindock("show", JOB_ID, "--url", url)
    assert (result.returncode, result.stderr) == (
        2, f"error: the API answered 502 Bad Gateway to {url}/v1/jobs/{JOB_ID}\n")
    answers.append((500, JSON, detail("the database refused the query")))
    result = traindock("ls", "--url", url)
    assert (result.returncode, result.stderr) == (2, "error: the database refused the query\n")


def test_a_url_that_is_not_http_is_exit_2_naming_the_option():
    result = traindock("ls", "--url", "ftp://127.0.0.1:21")
    assert (result.returncode, result.stderr) == (
        2, "error: ftp://127.0.0.1:21 is not an http(s) URL; pass --url like "
           "http://127.0.0.1:8000\n")
