"""`traindock up` end to end, as a user runs it: embedded PostgreSQL, the filesystem broker, the
API and a worker as child processes. A real job trains to a real accuracy, a killed worker or
API is restarted, a killed PostgreSQL stops everything, and a stop by SIGTERM or SIGINT leaves
no process behind: not the API, not the worker, not a training child, not PostgreSQL. The
restart policy itself (backoff, leftovers, a stop while a restart is pending) is tested on
stand-in children, in seconds."""

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

from cli.supervise import RestartPolicy

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SPEC = REPO_ROOT / "examples" / "digits-mlp.json"
STARTUP_TIMEOUT_S = 180.0
JOB_TIMEOUT_S = 180.0
EXIT_TIMEOUT_S = 30.0
RESTART_TIMEOUT_S = 15.0
# Short leases and a fast reaper: a job whose worker was killed is queued again in seconds.
FAST_RECOVERY = {
    "TRAINDOCK_LEASE_TTL_S": "4",
    "TRAINDOCK_REAPER_INTERVAL_S": "0.5",
    "TRAINDOCK_REPUBLISH_AFTER_S": "2",
}

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


def up_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    # What a user has who runs `traindock up` on a fresh machine: no database, no broker.
    drop = ("TRAINDOCK_DATABASE_URL", "TRAINDOCK_BROKER_URL", "TRAINDOCK_DATA_DIR")
    env = {key: value for key, value in os.environ.items() if key not in drop}
    return {**env, **(extra or {})}


def small_job(epochs: int) -> dict[str, Any]:
    spec = json.loads(EXAMPLE_SPEC.read_text())
    spec["training"] = {"epochs": epochs, "batch_size": 64, "seed": 0}
    return spec


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

    def wait_until_healthy(
        self, client: httpx.Client, timeout_s: float = STARTUP_TIMEOUT_S
    ) -> None:
        """Until /healthz answers 200 and `up` has said so too: before its banner, `up` is still
        starting, and takes a child that dies for a failed start rather than restarting it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"up exited with {self.process.returncode}{self.log_tail()}")
            try:
                healthy = client.get(f"{self.url}/healthz").status_code == 200
            except httpx.TransportError:
                healthy = False
            if healthy and "traindock is up" in self.log_path.read_text(errors="replace"):
                self.record_processes()
                # `up` asks for API keys: the client sends the admin key it made.
                key_file = self.data_dir / "admin-api-key"
                if key_file.exists():
                    client.headers["authorization"] = f"Bearer {key_file.read_text().strip()}"
                return
            time.sleep(0.5)
        pytest.fail(f"/healthz did not answer 200 in {timeout_s:.0f} s{self.log_tail()}")

    def direct_child(self, marker: str) -> psutil.Process | None:
        """The living child of `up` whose command line contains marker (`cli.main worker`)."""
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return None
        found = [proc for proc in children if is_alive(proc) and marker in " ".join(_cmdline(proc))]
        return found[0] if found else None

    def wait_for_replacement(self, marker: str, dead_pid: int) -> psutil.Process:
        """The child that `up` started in place of the one with dead_pid."""
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"up exited after a child died{self.log_tail()}"
            child = self.direct_child(marker)
            if child is not None and child.pid != dead_pid:
                self.record_processes()
                return child
            time.sleep(0.2)
        pytest.fail(f"no new {marker!r} within {RESTART_TIMEOUT_S:.0f} s{self.log_tail()}")

    def wait_for_job(self, client: httpx.Client, job_id: str) -> dict[str, Any]:
        """The job once it succeeded; fails the test if it ends otherwise or takes too long."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            # Often, so that the short-lived training child is among the processes checked.
            self.record_processes()
            response = client.get(f"{self.url}/v1/jobs/{job_id}")
            assert response.status_code == 200, response.text
            job = response.json()
            if job["state"] == "succeeded":
                return job
            if job["state"] in ("failed", "cancelled"):
                pytest.fail(f"job {job['state']}: {job.get('error')}{self.log_tail()}")
            assert self.process.poll() is None, f"up exited during the job{self.log_tail()}"
            time.sleep(0.2)
        pytest.fail(f"job not done after {JOB_TIMEOUT_S:.0f} s: {job}{self.log_tail()}")

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


StartUp = Callable[..., RunningUp]


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[StartUp]:
    """Starts `traindock up` in a fresh data directory under tmp_path, with extra environment
    variables if given. If the test fails half-way, the fixture still stops everything, so one
    failure cannot leak into the next."""
    started: list[RunningUp] = []

    def start(extra_env: dict[str, str] | None = None) -> RunningUp:
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
                env=up_environment(extra_env),
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
def test_up_trains_a_job_and_stops_cleanly_on_sigterm(start_up: StartUp) -> None:
    up = start_up()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        up.wait_until_healthy(client)

        created = client.post(f"{up.url}/v1/jobs", json=json.loads(EXAMPLE_SPEC.read_text()))
        assert created.status_code == 201, created.text
        job = up.wait_for_job(client, created.json()["id"])

    assert accuracy_on_test_set(job["summary"]) >= 0.9, job["summary"]
    # The job's training process was among the processes watched, so the check below covers it.
    assert up.children_of("cli.main worker"), up.described
    up.stop_and_check_nothing_is_left(signal.SIGTERM)


@pytest.mark.timeout(2 * STARTUP_TIMEOUT_S + 2 * EXIT_TIMEOUT_S)
def test_children_die_with_a_killed_up_and_the_next_up_stops_cleanly_on_sigint(
    start_up: StartUp,
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


@pytest.mark.timeout(STARTUP_TIMEOUT_S + RESTART_TIMEOUT_S + JOB_TIMEOUT_S + 2 * EXIT_TIMEOUT_S)
def test_a_killed_worker_is_restarted_and_runs_the_next_job(start_up: StartUp) -> None:
    # A cold child per job, so that the only "worker.child" process is the job's own: a warm
    # one (the default) waits under each worker, the killed one's included.
    up = start_up({**FAST_RECOVERY, "TRAINDOCK_WARM_CHILD": "false"})
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        up.wait_until_healthy(client)
        worker = up.direct_child("cli.main worker")
        assert worker is not None, up.described
        worker.kill()
        replacement = up.wait_for_replacement("cli.main worker", worker.pid)
        assert "restarting in 1 s (restart 1)" in up.log_path.read_text(), up.log_tail()

        created = client.post(f"{up.url}/v1/jobs", json=small_job(epochs=2))
        assert created.status_code == 201, created.text
        job = up.wait_for_job(client, created.json()["id"])

    assert job["attempt"] == 1, job
    trained_by = [ppid for ppid, command in up.described.values() if "worker.child" in command]
    assert trained_by == [replacement.pid], up.described
    up.stop_and_check_nothing_is_left(signal.SIGTERM)


@pytest.mark.timeout(STARTUP_TIMEOUT_S + RESTART_TIMEOUT_S + 2 * JOB_TIMEOUT_S + 2 * EXIT_TIMEOUT_S)
def test_a_job_whose_worker_is_killed_resumes_from_its_checkpoint(start_up: StartUp) -> None:
    """A killed worker costs its job one lease: the restarted worker's reaper queues the job
    again, and the next attempt starts from the last checkpoint, not from scratch."""
    up = start_up(FAST_RECOVERY)
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        up.wait_until_healthy(client)
        created = client.post(f"{up.url}/v1/jobs", json=small_job(epochs=10))
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]

        deadline = time.monotonic() + JOB_TIMEOUT_S
        job = created.json()
        # An epoch done is a checkpoint written (checkpoint_every_epochs defaults to 1).
        while job["state"] != "running" or job["progress"]["epoch"] < 2:
            assert job["state"] in ("queued", "running"), job
            assert time.monotonic() < deadline, f"no epoch done: {job}{up.log_tail()}"
            up.record_processes()
            time.sleep(0.2)
            job = client.get(f"{up.url}/v1/jobs/{job_id}").json()
        worker = up.direct_child("cli.main worker")
        assert worker is not None, up.described
        worker.kill()
        up.wait_for_replacement("cli.main worker", worker.pid)
        job = up.wait_for_job(client, job_id)

    assert job["attempt"] == 2, job
    second_attempt = (up.data_dir / "logs" / job_id / "attempt-2.log").read_text()
    assert "resuming from" in second_attempt, second_attempt
    up.stop_and_check_nothing_is_left(signal.SIGTERM)


@pytest.mark.timeout(STARTUP_TIMEOUT_S + 2 * RESTART_TIMEOUT_S + 2 * EXIT_TIMEOUT_S)
def test_a_killed_api_is_restarted(start_up: StartUp) -> None:
    up = start_up()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        up.wait_until_healthy(client)
        api = up.direct_child("cli.main api")
        assert api is not None, up.described
        api.kill()
        up.wait_for_replacement("cli.main api", api.pid)
        up.wait_until_healthy(client, timeout_s=RESTART_TIMEOUT_S)
    assert "the API is running again" in up.log_path.read_text(), up.log_tail()
    up.stop_and_check_nothing_is_left(signal.SIGINT)


@pytest.mark.timeout(STARTUP_TIMEOUT_S + 3 * EXIT_TIMEOUT_S)
def test_up_stops_everything_with_status_1_when_postgresql_dies(start_up: StartUp) -> None:
    up = start_up()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        up.wait_until_healthy(client)
    up.record_processes()
    postmaster = up.postgres_processes()[0]
    postmaster.kill()

    # The worker gets its whole shutdown grace (TRAINDOCK_PREEMPT_GRACE_S and a margin).
    try:
        code = up.process.wait(timeout=2 * EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"up still running after PostgreSQL died{up.log_tail()}")
    assert code == 1, up.log_tail()
    assert f"PostgreSQL (pid {postmaster.pid}) stopped unexpectedly" in up.log_tail()
    # The backends of a killed postmaster end by themselves, soon after it.
    deadline = time.monotonic() + 10.0
    while (left := [describe(p) for p in up.seen.values() if is_alive(p)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert not left, f"left running after up exited: {left}{up.log_tail()}"


def test_restart_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(first_s=1.0, max_s=60.0)
    assert [policy.delay_s(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.delay_s(100_000) == 60.0


def stand_in_supervision() -> None:
    """Runs in a process of its own (it becomes a subreaper, which pytest must not): supervises
    stand-in children with short backoffs and prints what happened as JSON."""
    import logging
    import threading

    from cli.supervise import (
        Child,
        StopSignals,
        become_subreaper,
        living_descendants,
        start_child,
        stop_process_tree,
        supervise,
    )

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logging.getLogger("traindock.up").addHandler(Collect())
    logging.getLogger("traindock.up").setLevel(logging.INFO)
    become_subreaper()
    env = dict(os.environ)

    def run(child: Child, policy: RestartPolicy, restarts: int) -> dict[str, Any]:
        """Supervise child until `restarts` restarts are scheduled, then ask for a stop."""
        signals = StopSignals()
        asked: list[float] = []

        def stop_while_a_restart_is_pending() -> None:
            while child.restarts < restarts or child.restart_at is None:
                time.sleep(0.01)
            asked.extend([time.monotonic(), child.restart_at])
            signals.received.append(signal.SIGTERM)

        threading.Thread(target=stop_while_a_restart_is_pending, daemon=True).start()
        code = supervise([child], signals, policy)
        returned_at = time.monotonic()
        deadline = returned_at + 5.0
        while living_descendants({child.process.pid}) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [" ".join(_cmdline(proc)) for proc in living_descendants({child.process.pid})]
        stop_process_tree([child], signals, 1.0)
        return {
            "code": code,
            "stop_latency_s": returned_at - asked[0],
            "restart_pending_s": asked[1] - asked[0],
            "left": left,
        }

    # Dies soon after starting a grandchild that nothing ties to it: what a dead worker's
    # training child is, should PR_SET_PDEATHSIG not have killed it.
    crasher = [
        sys.executable,
        "-c",
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "time.sleep(0.2); sys.exit(3)",
    ]
    crashing = run(
        start_child("crasher", crasher, env),
        RestartPolicy(first_s=0.5, max_s=30.0, stable_after_s=60.0),
        restarts=3,
    )
    # Up longer than stable_after_s each time: the backoff starts over after every death.
    steady = [sys.executable, "-c", "import time; time.sleep(0.4)"]
    steady_result = run(
        start_child("steady", steady, env),
        RestartPolicy(first_s=0.1, max_s=30.0, stable_after_s=0.3),
        restarts=3,
    )

    sleeper = start_child("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], env)
    fatal = supervise([sleeper], StopSignals(), cannot_go_on=lambda: "the database is gone")
    stop_process_tree([sleeper], StopSignals(), 1.0)
    print(json.dumps({
        "crasher": crashing, "steady": steady_result, "fatal": fatal, "messages": messages
    }))


@pytest.mark.timeout(60)
def test_supervise_restarts_with_backoff_and_stops_while_a_restart_is_pending() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from tests.test_up import stand_in_supervision as s; s()"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    messages = "\n".join(outcome["messages"])

    crasher = outcome["crasher"]
    for delay, restart in (("0.5", 1), ("1", 2), ("2", 3)):
        expected = f"exited with code 3; restarting in {delay} s (restart {restart})"
        assert expected in messages, messages
    # Each death's grandchild was killed before the restart, the last one included.
    assert messages.count("left behind by the crasher") == 3, messages
    assert crasher["left"] == [], crasher
    # The stop came with a restart 2 s away, and did not wait for it.
    assert crasher["code"] == 0
    assert crasher["restart_pending_s"] > 1.0, crasher
    assert crasher["stop_latency_s"] < 0.5, crasher

    assert messages.count("restarting in 0.1 s") == 3, messages
    assert "restarting in 0.2 s" not in messages, messages
    assert outcome["steady"]["code"] == 0

    assert outcome["fatal"] == 1
    assert "the database is gone" in messages


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


def test_up_refuses_no_auth_on_a_public_address(tmp_path: Path) -> None:
    result = subprocess.run(
        [*up_command(tmp_path / "data", free_port()), "--no-auth", "--host", "0.0.0.0"],
        cwd=REPO_ROOT, env=up_environment(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "--no-auth with --host 0.0.0.0" in result.stderr, result.stderr
    assert "--host 127.0.0.1" in result.stderr, result.stderr
    assert not (tmp_path / "data" / "pg").exists(), "PostgreSQL was started for nothing"


@pytest.mark.timeout(2 * STARTUP_TIMEOUT_S + 2 * EXIT_TIMEOUT_S)
def test_up_prints_its_admin_key_once_and_keeps_it_across_a_restart(start_up: StartUp) -> None:
    first = start_up()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        first.wait_until_healthy(client)
        key_file = first.data_dir / "admin-api-key"
        token = key_file.read_text().strip()
        assert token.startswith("td_") and key_file.stat().st_mode & 0o777 == 0o600
        output = first.log_path.read_text()
        assert output.count(token) == 1 and str(key_file) in output, first.log_tail()
        assert client.get(f"{first.url}/v1/jobs").status_code == 200
        no_key = httpx.get(f"{first.url}/v1/jobs", timeout=10, trust_env=False)
        assert no_key.status_code == 401, no_key.text
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=EXIT_TIMEOUT_S) == 0, first.log_tail()

    second = start_up()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        second.wait_until_healthy(client)
        assert key_file.read_text().strip() == token  # kept, not replaced
        output = second.log_path.read_text()
        assert token not in output and str(key_file) in output, second.log_tail()
        assert client.get(f"{second.url}/v1/jobs").status_code == 200
    second.process.send_signal(signal.SIGTERM)
    assert second.process.wait(timeout=EXIT_TIMEOUT_S) == 0, second.log_tail()
