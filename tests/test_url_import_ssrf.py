"""URL imports cannot be turned against the server's own network (issue 15): non-public
addresses are refused by default (and reachable only through a setting), every redirect is
checked again and at most 3 are followed, the whole download has a deadline, credentials in
the URL are never stored or shown, errors never quote the remote file, a closed port and a
silent one read the same, and deeply nested JSON is a 422. Real API processes, a real local
HTTP server."""

from __future__ import annotations

import io
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest

from core.net_policy import AddressRefused, NetPolicy, resolve_checked
from tests.conftest import free_port, start_api


class Server:
    """GET /<name>: the registered bytes; /redirect/<n>/<target>: n more redirects, then
    to <target> (a path, or `away` for a private address); /slow: a byte every 0.5 s. Every
    request's path and Authorization header are recorded."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.seen: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                outer.seen.append((self.path, self.headers.get("authorization")))
                path = self.path.split("?")[0].lstrip("/")
                if path.startswith("redirect/"):
                    _, count, target = path.split("/", 2)
                    n = int(count)
                    location = (f"/redirect/{n - 1}/{target}" if n > 1 else
                                "http://10.255.255.1/data.npz" if target == "away"
                                else f"/{target}")
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path == "slow.npz":
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    try:
                        for _ in range(1000):
                            self.wfile.write(b"\0")
                            self.wfile.flush()
                            time.sleep(0.5)
                    except OSError:
                        pass
                    return
                body = outer.files.get(path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    serving = Server()
    buffer = io.BytesIO()
    np.savez(buffer, x_train=np.arange(12, dtype=np.float32).reshape(6, 2),
             y_train=np.array([0, 1] * 3))
    serving.files["data.npz"] = buffer.getvalue()
    serving.files["secret.csv"] = b"user,password\nalice,hunter2\nbob,swordfish\n"
    yield serving
    serving.close()


@pytest.fixture(scope="module")
def default_api(service_env, tmp_path_factory) -> Iterator[str]:
    """An API with the default policy: no non-public address is allowed."""
    env = {k: v for k, v in service_env.items() if k != "TRAINDOCK_URL_IMPORT_ALLOW_NETWORKS"}
    service, url = start_api(env, tmp_path_factory.mktemp("api-ssrf-default"))
    yield url
    service.stop()


@pytest.fixture(scope="module")
def loopback_api(service_env, tmp_path_factory) -> Iterator[str]:
    """Loopback allowed (for the local server), with a short overall deadline."""
    service, url = start_api(service_env, tmp_path_factory.mktemp("api-ssrf-loopback"),
                             TRAINDOCK_URL_IMPORT_ALLOW_NETWORKS="127.0.0.0/8",
                             TRAINDOCK_IMPORT_DEADLINE_S="3")
    yield url
    service.stop()


def _import(api: str, url: str, **extra) -> httpx.Response:
    with httpx.Client(base_url=api, timeout=60) as http:
        return http.post("/v1/datasets", json={"url": url, "name": f"ssrf-{uuid.uuid4().hex[:8]}"}
                         | extra)


def _refused(api: str, url: str, status: int = 422, **extra) -> str:
    response = _import(api, url, **extra)
    assert response.status_code == status, response.text
    (detail,) = response.json()["detail"]
    assert detail["field"] == "url"
    return detail["message"]


def test_non_public_addresses_are_refused_by_default(default_api, server):
    before = len(server.seen)
    assert "loopback" in _refused(default_api, f"{server.url}/data.npz")
    port = server.server.server_address[1]
    assert "loopback" in _refused(default_api, f"http://localhost:{port}/data.npz")
    assert "loopback" in _refused(default_api, f"http://[::1]:{port}/data.npz")
    assert "loopback" in _refused(default_api, f"http://[::ffff:127.0.0.1]:{port}/data.npz")
    for url, kind in (("http://169.254.169.254/latest/meta-data/x.npz", "link-local"),
                      ("http://10.1.2.3/data.npz", "private"),
                      ("http://192.168.1.1/data.npz", "private"),
                      ("http://224.0.0.1/data.npz", "multicast"),
                      ("http://0.0.0.0/data.npz", "unspecified")):
        started = time.monotonic()
        assert kind in _refused(default_api, url), url
        assert time.monotonic() - started < 5  # refused before any connection is tried
    assert len(server.seen) == before  # nothing reached the server


def test_the_setting_lets_loopback_through(loopback_api, server):
    response = _import(loopback_api, f"{server.url}/data.npz")
    assert response.status_code == 201, response.text
    # and only what it names: 10/8 is still refused
    assert "private" in _refused(loopback_api, "http://10.1.2.3/data.npz")


def test_every_redirect_is_checked_and_at_most_three_are_followed(loopback_api, server):
    ok = _import(loopback_api, f"{server.url}/redirect/3/data.npz")
    assert ok.status_code == 201, ok.text
    assert "redirects more than 3" in _refused(loopback_api,
                                               f"{server.url}/redirect/4/data.npz")
    assert "private" in _refused(loopback_api, f"{server.url}/redirect/1/away")


def test_credentials_are_used_but_never_stored_or_shown(loopback_api, server):
    host = server.url.removeprefix("http://")
    url = f"http://alice:s3cret@{host}/data.npz?token=t0ps3cret&v=1"
    response = _import(loopback_api, url)
    assert response.status_code == 201, response.text
    assert "s3cret" not in response.text and "t0ps3cret" not in response.text
    assert response.json()["source"] == {"url": f"http://{host}/data.npz?token=REDACTED&v=1"}
    with httpx.Client(base_url=loopback_api) as http:
        listed = http.get("/v1/datasets").text
    assert "s3cret" not in listed and "t0ps3cret" not in listed
    assert server.seen[-1][1] is not None  # the server was asked with them
    message = _refused(loopback_api, f"http://alice:s3cret@{host}/missing.npz?token=t0ps3cret")
    assert "s3cret" not in message and "t0ps3cret" not in message


def test_errors_never_quote_the_remote_file(loopback_api, server):
    message = _refused(loopback_api, f"{server.url}/secret.csv", target="nothing")
    for word in ("user", "password", "alice", "hunter2"):
        assert word not in message, message
    assert "upload it directly" in message


def test_a_closed_port_and_a_silent_one_read_the_same(loopback_api):
    closed = free_port()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        messages = [
            _refused(loopback_api, f"http://127.0.0.1:{port}/data.npz").replace(str(port), "P")
            for port in (closed, silent.getsockname()[1])
        ]
    finally:
        silent.close()
    assert messages[0] == messages[1] and messages[0].startswith("url: could not fetch")


def test_the_whole_download_has_a_deadline(loopback_api, server):
    started = time.monotonic()
    message = _refused(loopback_api, f"{server.url}/slow.npz")
    assert "TRAINDOCK_IMPORT_DEADLINE_S" in message
    assert time.monotonic() - started < 10


def test_deeply_nested_json_is_a_422(loopback_api):
    body = b"[" * 100_000 + b"]" * 100_000
    with httpx.Client(base_url=loopback_api, timeout=30) as http:
        response = http.post("/v1/datasets", content=body,
                             headers={"content-type": "application/json"})
    assert response.status_code in (413, 422), response.text
    small = b'{"url": ' + b"[" * 5000 + b"]" * 5000 + b', "name": "x"}'
    with httpx.Client(base_url=loopback_api, timeout=30) as http:
        response = http.post("/v1/datasets", content=small,
                             headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text


def test_the_policy_is_a_function_other_features_can_use():
    policy = NetPolicy()
    for host in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "fe80::1", "fc00::1",
                 "100.64.0.1", "localhost"):
        with pytest.raises(AddressRefused):
            resolve_checked(host, 80, policy)
    assert str(resolve_checked("8.8.8.8", 443, policy)) == "8.8.8.8"
    assert resolve_checked("127.0.0.1", 80, NetPolicy(allow_private=True))
    with pytest.raises(AddressRefused, match="multicast"):
        resolve_checked("224.0.0.1", 80, NetPolicy(allow_private=True))
    narrow = NetPolicy.from_settings(False, "127.0.0.0/8")
    assert resolve_checked("127.0.0.2", 80, narrow)
    with pytest.raises(AddressRefused):
        resolve_checked("10.0.0.1", 80, narrow)
    with pytest.raises(ValueError, match="ALLOW_NETWORKS"):
        NetPolicy.from_settings(False, "not-a-network")
