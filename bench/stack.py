"""Start and stop a private traindock stack as real processes, for benchmarks.

Everything a benchmark creates is its own: a fresh PostgreSQL database (migrated with
core.migrate.upgrade, dropped at the end), a private redis-server on a free port (so no
benchmark can flush a test session's Redis database), a DATA_DIR under a temp folder, and
the API and workers as `python -m cli.main api|worker` children, each in its own session so
that stopping one kills what it started (a training child included).

Stable API (other benchmarks import these; keep the signatures):

    free_port() -> int
        A TCP port on 127.0.0.1 that was free a moment ago.
    create_database(prefix="bench", admin_url=None) -> tuple[str, str]
        CREATE DATABASE <prefix>_<random>, migrate it; returns (name, url).
    drop_database(name, admin_url=None) -> None
        DROP DATABASE ... WITH (FORCE); safe to call twice.
    start_redis(data_dir) -> Process
        A private redis-server (no persistence); its URL is `process.url`.
    wait_for_health(url, timeout=60, proc=None) -> None
        Poll GET {url}/healthz until 200; raises (with the log) if `proc` exits first.
    Process
        A child process with its output in a log file: .pid, .proc (Popen), .url (or None),
        .log() -> str, .wait_for_log(text, timeout), .stop(timeout=15) (SIGTERM to its
        process group, then SIGKILL; reaps leftovers).
    Stack(broker="redis", extra_env=None, keep=False, pg_admin_url=None, redis_url=None)
        A context manager owning a database, a broker and a DATA_DIR:
          .database_url, .broker_url, .data_dir, .env (TRAINDOCK_* for children)
          .start_api(port=None, workers=1) -> Process  (waits for /healthz; .url is set)
          .start_worker(name="w1") -> Process          (waits for the worker's "ready.")
          .api_url (the first API's URL)
          .close() stops every process (newest first), drops the database, removes
          DATA_DIR (unless keep=True). It runs on normal exit, on an exception, on Ctrl-C
          and on SIGTERM (SIGTERM is turned into SystemExit while a Stack is open).
        broker: "redis" (private redis-server) or "filesystem" (the embedded broker,
        filesystem:// under DATA_DIR/broker, as `traindock up` uses). redis_url: use that
        Redis (a database of it no test uses) instead of starting one.

Where PostgreSQL and Redis are: `pg_admin_url` / `admin_url` arguments, else the environment,
TRAINDOCK_BENCH_PG (admin URL, default postgresql://postgres@127.0.0.1:5432/postgres) and
TRAINDOCK_BENCH_REDIS (default: a private redis-server on a free port). Children inherit
os.environ minus any TRAINDOCK_* variables, plus `extra_env`.
bench/report.py holds the shared table and machine-description helpers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType, TracebackType

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get(
    "TRAINDOCK_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url(name: str, admin_url: str | None = None) -> str:
    base, _, _ = (admin_url or PG_ADMIN_URL).rpartition("/")
    return f"{base}/{name}"


def create_database(prefix: str = "bench", admin_url: str | None = None) -> tuple[str, str]:
    # Imported here so that `import bench.stack` stays cheap for scripts that only need ports.
    from core.migrate import upgrade
    from core.settings import Settings

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url or PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(name, admin_url)
    try:
        upgrade(Settings(database_url=url).sqlalchemy_url)
    except BaseException:
        drop_database(name, admin_url)
        raise
    return name, url


def drop_database(name: str, admin_url: str | None = None) -> None:
    with psycopg.connect(admin_url or PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Process:
    """A child process with its output in a log file, in a session (process group) of its own."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path,
                 url: str | None = None) -> None:
        self.args = args
        self.url = url
        self.log_path = log_path
        self._log_file = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args[2:4]} exited early:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"{text!r} not seen in {timeout}s:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 15) -> None:
        # Descendants first noted, so that a training child that left the group is reaped too.
        try:
            leftovers = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            leftovers = []
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        for child in leftovers:
            with contextlib.suppress(psutil.Error):
                child.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # anything still in the group
        self._log_file.close()


def start_redis(data_dir: Path) -> Process:
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(data_dir)]
    redis = Process(args, dict(os.environ), data_dir / "redis.log",
                    url=f"redis://127.0.0.1:{port}/0")
    redis.wait_for_log("Ready to accept connections", timeout=20)
    return redis


def wait_for_health(url: str, timeout: float = 60, proc: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"{url} exited before it was healthy:\n{proc.log()[-3000:]}")
        if time.monotonic() > deadline:
            log = proc.log()[-3000:] if proc else ""
            raise TimeoutError(f"{url} not healthy after {timeout}s:\n{log}")
        time.sleep(0.05)


def _raise_system_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class Stack:
    """A database, a broker, a DATA_DIR and the processes started on them; see the module doc."""

    def __init__(self, broker: str = "redis", extra_env: dict[str, str] | None = None,
                 keep: bool = False, pg_admin_url: str | None = None,
                 redis_url: str | None = None) -> None:
        if broker not in ("redis", "filesystem"):
            raise ValueError("broker must be 'redis' or 'filesystem'")
        self.keep = keep
        self.processes: list[Process] = []
        self.api_url: str | None = None
        self._db_name: str | None = None
        self._pg_admin_url = pg_admin_url or PG_ADMIN_URL
        redis_url = redis_url or os.environ.get("TRAINDOCK_BENCH_REDIS")
        self._old_sigterm = signal.signal(signal.SIGTERM, _raise_system_exit)
        self.data_dir = Path(tempfile.mkdtemp(prefix="traindock-bench-"))
        self.log_dir = self.data_dir / "logs"
        self.log_dir.mkdir()
        try:
            self._db_name, self.database_url = create_database(admin_url=self._pg_admin_url)
            if broker == "redis" and redis_url:
                self.broker_url = redis_url
            elif broker == "redis":
                redis = start_redis(self.data_dir)
                self.processes.append(redis)
                self.broker_url = redis.url or ""
            else:
                self.broker_url = "filesystem://"
            env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")}
            env.update(
                TRAINDOCK_DATABASE_URL=self.database_url,
                TRAINDOCK_BROKER_URL=self.broker_url,
                TRAINDOCK_DATA_DIR=str(self.data_dir),
                PYTHONUNBUFFERED="1",
                # The benchmarks' clients send no API key; extra_env={"TRAINDOCK_AUTH": "on"}
                # with a key measures the lookup (docs/security.md).
                TRAINDOCK_AUTH="off",
            )
            env.update(extra_env or {})
            self.env = env
        except BaseException:
            self.close()
            raise

    def start_api(self, port: int | None = None, workers: int = 1) -> Process:
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        api = Process([sys.executable, "-m", "cli.main", "api", "--port", str(port),
                       "--workers", str(workers)], self.env,
                      self.log_dir / f"api-{port}.log", url=url)
        self.processes.append(api)
        wait_for_health(url, proc=api)
        self.api_url = self.api_url or url
        return api

    def start_worker(self, name: str = "w1") -> Process:
        worker = Process([sys.executable, "-m", "cli.main", "worker", "--name", f"{name}@bench"],
                         self.env, self.log_dir / f"worker-{name}.log")
        self.processes.append(worker)
        worker.wait_for_log("ready.", timeout=60)
        return worker

    def close(self) -> None:
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as exc:  # keep cleaning up the rest
                print(f"[stack] stopping {process.args[:4]}: {exc}", file=sys.stderr)
        self.processes.clear()
        if self._db_name:
            try:
                drop_database(self._db_name, self._pg_admin_url)
            except Exception as exc:
                print(f"[stack] dropping {self._db_name}: {exc}", file=sys.stderr)
            self._db_name = None
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        signal.signal(signal.SIGTERM, self._old_sigterm)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
