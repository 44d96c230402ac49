"""`traindock up` end to end, as a user runs it: embedded PostgreSQL, the filesystem broker, the
API and a worker as child processes. A real job trains to a real accuracy, and a stop by
SIGTERM or SIGINT leaves no process behind: not the API, not the worker, not a training
child, not PostgreSQL."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SPEC = REPO_ROOT / "examples" / "digits-mlp.json"
STARTUP_TIMEOUT_S = 180.0
JOB_TIMEOUT_S = 180.0
EXIT_TIMEOUT_S = 30.0

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="`up` ties its children to it with prctl(2)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def up_command(data_dir: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli.main",
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]


def up_environment() -> dict[str, str]:
    # What a user has who runs `traindock up` on a fresh machine: no database, no broker.
    drop = ("TRAINDOCK_DATABASE_URL", "TRAINDOCK_BROKER_URL", "TRAINDOCK_DATA_DIR")
    return {key: value for key, value in os.environ.items() if key not in drop}


def is_alive(proc: psutil.Process) -> bool:
    # A zombie has exited; it waits only for its (new) parent to collect its status.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline())[:150]}"
    except psutil.Error:
        return f"pid {proc.pid}"


@dataclass
class RunningUp:
    process: subprocess.Popen[bytes]
    data_dir: Path
    url: str
    log_path: Path
    # Every process seen below `up` or belonging to its PostgreSQL, gathered while it ran:
    # after the stop, each one must be gone.
    seen: dict[tuple[int, float], psutil.Process] = field(default_factory=dict)
    # (parent pid, command line) of each, taken while it lived.
    described: dict[tuple[int, float], tuple[int, str]] = field(default_factory=dict)

    def log_tail(self, chars: int = 8000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        # The test's own polling fills the access log; the lines that explain a failure are
        # the others.
        lines = [line for line in text.splitlines() if '"GET /' not in line]
        return "\n--- last output of traindock up ---\n" + "\n".join(lines)[-chars:]

    def record_processes(self) -> None:
        try:
            below = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            below = []
        for proc in [*below, *self.postgres_processes()]:
            try:
                key = (proc.pid, proc.create_time())
                if key not in self.seen:
                    self.described[key] = (proc.ppid(), " ".join(proc.cmdline()))
                    self.seen[key] = proc
            except psutil.Error:
                continue

    def children_of(self, marker: str) -> list[str]:
        """Command lines of the processes seen whose parent's command line contains marker."""
        parents = {pid for (pid, _), (_, command) in self.described.items() if marker in command}
        return [command for ppid, command in self.described.values() if ppid in parents]

    def postgres_processes(self) -> list[psutil.Process]:
        """The postmaster named in postmaster.pid and its children (the backends)."""
        pid_file = self.data_dir / "pg" / "postmaster.pid"
        try:
            postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
            return [postmaster, *postmaster.children(recursive=True)]
        except (OSError, IndexError, ValueError, psutil.NoSuchProcess):
            return []

    def wait_until_healthy(self, client: httpx.Client) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"up exited with {self.process.returncode}{self.log_tail()}")
            try:
                if client.get(f"{self.url}/healthz").status_code == 200:
                    self.record_processes()
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        pytest.fail(f"/healthz did not answer 200 in {STARTUP_TIMEOUT_S:.0f} s{self.log_tail()}")

    def stop_and_check_nothing_is_left(self, signum: signal.Signals) -> None:
        self.record_processes()
        commands = [" ".join(proc.cmdline()) for proc in self.seen.values() if is_alive(proc)]
        assert any("cli.main api" in command for command in commands), commands
        assert any("cli.main worker" in command for command in commands), commands
        assert self.postgres_processes(), "the embedded PostgreSQL is not running"

        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"up did not exit within {EXIT_TIMEOUT_S:.0f} s of {signum.name}{self.log_tail()}"
            )
        assert code == 0, f"up exited with {code} after {signum.name}{self.log_tail()}"

        left = [describe(proc) for proc in self.seen.values() if is_alive(proc)]
        assert not left, f"left running after up exited: {left}{self.log_tail()}"
        mentioning = [
            describe(proc)
            for proc in psutil.process_iter()
            if is_alive(proc) and str(self.data_dir) in " ".join(_cmdline(proc))
        ]
        assert not mentioning, f"processes still using {self.data_dir}: {mentioning}"
        # A clean PostgreSQL shutdown removes its pid file; a killed server leaves it.
        assert not (self.data_dir / "pg" / "postmaster.pid").exists()


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[Callable[[], RunningUp]]:
    """Starts `traindock up` in a fresh data directory under tmp_path. If the test fails
    half-way, the fixture still stops everything, so one failure cannot leak into the next."""
    started: list[RunningUp] = []

    def start() -> RunningUp:
        # The same data directory each time, as a user restarting `up` has. pgserver puts its
        # unix socket there or, when that path is too long for a socket (a long --basetemp),
        # in a short directory of its own.
        data_dir = tmp_path / "data"
        log_path = tmp_path / f"up-{len(started)}.log"
        port = free_port()
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                up_command(data_dir, port),
                cwd=REPO_ROOT,
                env=up_environment(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        running = RunningUp(process, data_dir, f"http://127.0.0.1:{port}", log_path)
        started.append(running)
        return running

    yield start

    for running in started:
        if running.process.poll() is None:
            running.process.terminate()
            try:
                running.process.wait(timeout=EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait()
        running.record_processes()
        for proc in running.seen.values():
            if is_alive(proc):
                proc.kill()


def accuracy_on_test_set(summary: dict[str, Any]) -> float:
    return float(summary["test"]["test_accuracy"])


@pytest.mark.timeout(STARTUP_TIMEOUT_S + JOB_TIMEOUT_S + 2 * EXIT_TIMEOUT_S)
def test_up_trains_a_job_and_stops_cleanly_on_sigterm(
    start_up: Callable[[], RunningUp],
) -> None:
    up = start_up()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        up.wait_until_healthy(client)

        created = client.post(f"{up.url}/v1/jobs", json=json.loads(EXAMPLE_SPEC.read_text()))
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]

        deadline = time.monotonic() + JOB_TIMEOUT_S
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            # Often, so that the short-lived training child is among the processes checked.
            up.record_processes()
            response = client.get(f"{up.url}/v1/jobs/{job_id}")
            assert response.status_code == 200, response.text
            job = response.json()
            if job["state"] == "succeeded":
                break
            if job["state"] in ("failed", "cancelled"):
                pytest.fail(f"job {job['state']}: {job.get('error')}{up.log_tail()}")
            assert up.process.poll() is None, f"up exited during the job{up.log_tail()}"
            time.sleep(0.2)
        else:
            pytest.fail(f"job not done after {JOB_TIMEOUT_S:.0f} s: {job}{up.log_tail()}")

    assert accuracy_on_test_set(job["summary"]) >= 0.9, job["summary"]
    # The job's training process was among the processes watched, so the check below covers it.
    assert up.children_of("cli.main worker"), up.described
    up.stop_and_check_nothing_is_left(signal.SIGTERM)


@pytest.mark.timeout(2 * STARTUP_TIMEOUT_S + 2 * EXIT_TIMEOUT_S)
def test_children_die_with_a_killed_up_and_the_next_up_stops_cleanly_on_sigint(
    start_up: Callable[[], RunningUp],
) -> None:
    """kill -9 gives `up` no chance to clean up: its children must die by themselves, and
    PostgreSQL, which outlives it by design, is adopted by the next `up` on the same data
    directory and stopped with it."""
    killed = start_up()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        killed.wait_until_healthy(client)
    killed.record_processes()
    postmasters = killed.postgres_processes()[:1]
    assert postmasters, "the embedded PostgreSQL is not running"
    children = [
        proc for key, proc in killed.seen.items() if killed.described[key][0] == killed.process.pid
    ]
    assert len(children) == 2, killed.described  # the API and the worker

    killed.process.kill()
    killed.process.wait(timeout=EXIT_TIMEOUT_S)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"children outlived a killed up: {[describe(p) for p in alive]}"
    assert is_alive(postmasters[0])

    up = start_up()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        up.wait_until_healthy(client)
    assert up.postgres_processes()[0].pid == postmasters[0].pid, "PostgreSQL was not adopted"
    up.stop_and_check_nothing_is_left(signal.SIGINT)
    left = [describe(proc) for proc in killed.seen.values() if is_alive(proc)]
    assert not left, f"left running from the killed up: {left}"


def run_up_briefly(data_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        up_command(data_dir, port),
        cwd=REPO_ROOT,
        env=up_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_up_names_the_port_when_it_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_up_briefly(tmp_path / "data", port)
    assert result.returncode == 2, result.stderr
    assert f"port {port}" in result.stderr and "--port" in result.stderr, result.stderr
    assert not (tmp_path / "data" / "pg").exists(), "PostgreSQL was started for nothing"


def test_up_refuses_a_data_dir_in_use(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with open(data_dir / "up.lock", "w") as lock:
        # What a running `up` holds on its data directory.
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_up_briefly(data_dir, free_port())
    assert result.returncode == 2, result.stderr
    assert "in use by another `traindock up`" in result.stderr, result.stderr
    assert "--data-dir" in result.stderr, result.stderr
