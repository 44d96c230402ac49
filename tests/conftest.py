"""Real parts: a fresh PostgreSQL database per test session, Redis, and the API and the
Celery worker as real processes talking over real HTTP and a real broker. Which PostgreSQL and
Redis: the machine's, or ones the session starts itself (tests/services.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

# One intra-op thread for the test process and every process it starts (API, workers,
# training children inherit the environment): the suite's networks are tiny, and on a 2-core
# machine running several of these processes at once, two threads each fight for the cores
# and make a small training run several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import httpx  # noqa: E402
import psycopg  # noqa: E402
import pytest  # noqa: E402
import redis  # noqa: E402
import torch  # noqa: E402

from core.migrate import upgrade  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.services import SuiteServices, with_database  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parent.parent
SERVICES = SuiteServices()


def pg_admin_url() -> str:
    """The PostgreSQL this session creates its databases on (started on first use if need be)."""
    return SERVICES.pg_admin_url()


def redis_url() -> str:
    """The Redis this session's brokers live on (started on first use if need be)."""
    return SERVICES.redis_url()


def pytest_unconfigure(config: pytest.Config) -> None:
    _drop_template()
    SERVICES.stop()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for line in SERVICES.started:
        terminalreporter.write_line(f"traindock: this session started {line}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_for(name: str) -> str:
    return with_database(pg_admin_url(), name)


def create_database(name: str) -> str:
    with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url_for(name)


def drop_database(name: str) -> None:
    with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The migrated database every other one of this session is copied from (CREATE DATABASE ...
# TEMPLATE): running the migrations costs about a second, a copy a tenth of that, and tests
# take a migrated database of their own about fifty times a run. Made on first use, dropped
# at the session's end; nothing connects to it but its copies' CREATE DATABASE.
_template: list[str] = []


def _migrated_template() -> str:
    if not _template:
        name = f"traindock_template_{uuid.uuid4().hex[:8]}"
        upgrade(Settings(database_url=create_database(name)).sqlalchemy_url)
        _template.append(name)
    return _template[0]


def create_migrated_database(name: str) -> str:
    """A new database at the head migration, as `upgrade` leaves it, copied from the session's
    migrated template."""
    template = _migrated_template()
    with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return database_url_for(name)


def _drop_template() -> None:
    if _template:
        drop_database(_template.pop())


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"traindock_test_{uuid.uuid4().hex[:8]}"
    url = create_migrated_database(name)
    yield url
    drop_database(name)


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A migrated database of the test's own, which no session-wide worker or reaper sees."""
    name = f"traindock_own_{uuid.uuid4().hex[:8]}"
    url = create_migrated_database(name)
    yield url
    drop_database(name)


CLAIM_KEY = "traindock-test-session"


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """A Redis database of its own, emptied first, so that stale messages cannot leak in.
    Databases 1..14 are claimed with SET NX (15 is test_queue.py's own), so that test
    sessions running side by side on one machine never share or flush each other's."""
    base = redis_url().rsplit("/", 1)[0]
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    for db in range(1, 15):
        conn = redis.Redis.from_url(f"{base}/{db}")
        if conn.set(CLAIM_KEY, token, nx=True, ex=3600):
            break
    else:
        raise RuntimeError("every Redis database 1..14 is claimed by another test session")
    conn.flushdb()  # drops the claim too: set it again
    conn.set(CLAIM_KEY, token, ex=3600)
    yield f"{base}/{db}"
    if conn.get(CLAIM_KEY) == token.encode():
        conn.delete(CLAIM_KEY)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def settings(database_url: str, broker_url: str, data_dir: Path) -> Settings:
    return Settings(database_url=database_url, broker_url=broker_url, data_dir=data_dir)


@pytest.fixture(scope="session")
def service_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")}
    env.update(
        TRAINDOCK_DATABASE_URL=settings.database_url,
        TRAINDOCK_BROKER_URL=settings.broker_url,
        TRAINDOCK_DATA_DIR=str(settings.data_dir),
        TRAINDOCK_LEASE_TTL_S="6",
        # the tests' URL imports fetch from a local HTTP server; loopback is refused by default
        TRAINDOCK_URL_IMPORT_ALLOW_NETWORKS="127.0.0.0/8",
        # The tests' webhook receivers listen on loopback, and retries come quickly.
        TRAINDOCK_WEBHOOK_ALLOW_PRIVATE="true",
        TRAINDOCK_WEBHOOK_RETRY_BASE_S="0.3",
        PYTHONUNBUFFERED="1",
        # The tests that are not about API keys run without them; tests/test_auth*.py start
        # APIs with TRAINDOCK_AUTH=on (start_api(..., TRAINDOCK_AUTH="on")).
        TRAINDOCK_AUTH="off",
        # Tests that use keys make requests as fast as they can; tests/test_limits_per_key.py
        # sets a rate of its own.
        TRAINDOCK_RATE_LIMIT_PER_S="0",
    )
    return env


class Service:
    """A child process with its output in a log file, stopped and reaped at teardown."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log_file = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"process exited early:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{text!r} not seen in {timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log_file.close()


def start_worker(env: dict[str, str], log_dir: Path, name: str = "w1") -> Service:
    service = Service([sys.executable, "-m", "cli.main", "worker", "--name", f"{name}@test"],
                      env, log_dir / f"worker-{name}.log")
    service.wait_for_log("ready.", timeout=60)
    return service


def start_api(env: dict[str, str], log_dir: Path, **extra: str) -> tuple[Service, str]:
    """An API process on its own port, once it answers /healthz; `extra` adds environment."""
    port = free_port()
    service = Service([sys.executable, "-m", "cli.main", "api", "--port", str(port)],
                      env | extra, log_dir / f"api-{port}.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return service, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or service.proc.poll() is not None:
            service.stop()
            raise RuntimeError(f"API did not become healthy:\n{service.log()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def api_url(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    service, url = start_api(service_env, tmp_path_factory.mktemp("logs"))
    yield url
    service.stop()


@pytest.fixture(scope="session")
def auth_api_url(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[str]:
    """An API on the session's database that asks for API keys (TRAINDOCK_AUTH=on); make keys
    with make_api_key."""
    service, url = start_api(service_env, tmp_path_factory.mktemp("auth-logs"),
                             TRAINDOCK_AUTH="on")
    yield url
    service.stop()


def make_api_key(settings: Settings, scopes: str, owner: str | None = None,
                 name: str | None = None) -> str:
    """A new key's token, written to the database as `traindock keys create` does."""
    from sqlalchemy.orm import Session

    from core.api_keys import parse_scopes
    from core.db import make_engine
    from core.repo.api_keys import create_key

    engine = make_engine(settings, pool_size=1)
    try:
        with Session(engine) as session:
            _, token = create_key(session, name or f"key-{uuid.uuid4().hex[:10]}",
                                  parse_scopes(scopes), owner)
            session.commit()
    finally:
        engine.dispose()
    return token


@pytest.fixture(scope="session")
def worker(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Service]:
    service = start_worker(service_env, tmp_path_factory.mktemp("worker-logs"))
    yield service
    service.stop()


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as http:
        yield http


def load_example(name: str) -> dict:
    import json

    return json.loads((ROOT / "examples" / f"{name}.json").read_text())


def wait_for_state(client: httpx.Client, job_id: str, states: set[str], timeout: float = 120
                   ) -> dict:
    """Polls as a client should: a 503 (the database is not answering) is waited out."""
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        response = client.get(f"/v1/jobs/{job_id}")
        if response.status_code != 503:
            job = response.json()
            if job["state"] in states:
                return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} still {job.get('state')} after {timeout}s: {job}")


def training_children(job_id: str, worker_log: str) -> list:
    """The processes training job_id: a cold child names the job on its command line; a warm
    one (the default), started before its job, by the worker's log line naming its pid."""
    import re

    import psutil

    pids = {int(pid) for pid in re.findall(rf"job {job_id} attempt \d+: training child pid (\d+)",
                                           worker_log)}
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "worker.child" in cmdline and (job_id in cmdline or proc.pid in pids):
            found.append(proc)
    return found


@pytest.fixture
def pg_folder() -> Iterator[Path]:
    """A folder for a test's own embedded PostgreSQL, outside pytest's tmp_path: as root,
    pgserver runs PostgreSQL as its own user, and every new pytest session of this user sets
    /tmp/pytest-of-<user> back to 0700, which would lock that user out of a session running
    beside it."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="traindock-test-pg-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
