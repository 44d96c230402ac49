"""The process supervision behind `traindock up`: the stop signals, starting the API and the
worker as children tied to this process, restarting one that dies (with exponential backoff),
and stopping the whole process tree at the end.

A dead child is restarted rather than taken as the end of the service: the API is stateless,
and a killed worker costs only its running job's lease. The reaper in the restarted worker
queues that job again once the lease expires, and it resumes from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import psutil

from core.processes import become_subreaper as _become_subreaper
from core.processes import describe_exit, die_with_parent

log = logging.getLogger("traindock.up")

POLL_S = 0.2
# How long the processes a dead child left behind get to vanish after SIGKILL before the
# restart goes ahead anyway (a process in uninterruptible I/O can take a while).
LEFTOVER_KILL_TIMEOUT_S = 10.0


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


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff for a child that keeps dying: first_s, then twice as long each time
    up to max_s. A child that stayed up for stable_after_s before it died starts over at
    first_s, so that one crash a day is restarted at once, not after a minute."""

    first_s: float = 1.0
    max_s: float = 60.0
    stable_after_s: float = 300.0

    def delay_s(self, quick_deaths: int) -> float:
        """The wait before the restart that follows quick_deaths earlier deaths in a row."""
        # Capped before the power: 2.0 ** 1100 overflows a float.
        return min(self.first_s * 2.0 ** min(quick_deaths, 64), self.max_s)


@dataclass
class Child:
    """A child process that `up` keeps running: when it dies, `process` is the dead one until
    `restart_at`, then the one that replaced it."""

    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    started_at: float
    restarts: int = 0
    # Deaths in a row, each after less than RestartPolicy.stable_after_s up: sets the backoff.
    quick_deaths: int = 0
    restart_at: float | None = None


def become_subreaper() -> None:
    """Orphans below this process (a training child whose worker died) are adopted by it
    instead of by init, so that a restart and the shutdown find and kill them too."""
    reason = _become_subreaper()
    if reason is not None:
        log.warning("could not become a child subreaper: %s", reason)


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        env=env,
        # A session of its own: Ctrl-C in the terminal reaches only `up`, which then stops
        # the children in order instead of all of them racing to handle SIGINT.
        start_new_session=True,
        preexec_fn=die_with_parent(os.getpid()),
    )


def start_child(name: str, command: list[str], env: dict[str, str]) -> Child:
    log.info("starting the %s", name)
    return Child(name, command, env, _spawn(command, env), time.monotonic())


def supervise(
    children: list[Child],
    signals: StopSignals,
    policy: RestartPolicy = RestartPolicy(),
    cannot_go_on: Callable[[], str | None] = lambda: None,
) -> int:
    """Keep the children running until a stop is requested (0), restarting each one that dies
    after its backoff. cannot_go_on says why the service must stop instead (PostgreSQL died),
    or None; its answer ends the supervision with 1."""
    while not signals.stop_requested:
        reason = cannot_go_on()
        if reason is not None:
            log.error("%s", reason)
            return 1
        for child in children:
            if child.restart_at is None:
                code = child.process.poll()
                if code is not None:
                    _schedule_restart(child, code, policy)
                    kill_leftovers(children, signals, child.name)
            elif time.monotonic() >= child.restart_at:
                _restart(child, policy)
        # A pending restart is only a time to compare with, so a stop is never kept waiting.
        time.sleep(POLL_S)
    return 0


def _schedule_restart(child: Child, code: int, policy: RestartPolicy) -> None:
    now = time.monotonic()
    if now - child.started_at >= policy.stable_after_s:
        child.quick_deaths = 0
    delay = policy.delay_s(child.quick_deaths)
    child.quick_deaths += 1
    child.restarts += 1
    child.restart_at = now + delay
    log.error(
        "the %s (pid %d) %s; restarting in %g s (restart %d)",
        child.name,
        child.process.pid,
        describe_exit(code),
        delay,
        child.restarts,
    )


def _restart(child: Child, policy: RestartPolicy) -> None:
    log.info("restarting the %s (restart %d)", child.name, child.restarts)
    try:
        child.process = _spawn(child.command, child.env)
    except OSError as exc:
        # Out of processes or memory, most likely: as good a reason to back off as a crash.
        delay = policy.delay_s(child.quick_deaths)
        child.quick_deaths += 1
        child.restart_at = time.monotonic() + delay
        log.error("could not restart the %s (%s); trying again in %g s", child.name, exc, delay)
        return
    child.started_at = time.monotonic()
    child.restart_at = None
    log.info("the %s is running again as pid %d", child.name, child.process.pid)


def leftover_processes(children: list[Child]) -> list[psutil.Process]:
    """The processes below this one that no living child accounts for: what a dead child left
    behind (its training child, if PR_SET_PDEATHSIG did not kill it), adopted by this process
    as their subreaper."""
    direct_pids = {child.process.pid for child in children}
    # Scanned before the living children's trees: a process that a living child starts
    # between the two scans then shows up in the second one, and is never taken for a leftover.
    below = living_descendants(direct_pids)
    accounted: set[int] = set()
    for child in children:
        if child.process.poll() is not None:
            continue
        accounted.add(child.process.pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = psutil.Process(child.process.pid).children(recursive=True)
            accounted.update(proc.pid for proc in tree)
    return [proc for proc in below if proc.pid not in accounted]


def kill_leftovers(children: list[Child], signals: StopSignals, dead_name: str) -> None:
    """SIGKILL what a dead child left behind and wait until it is gone, so that its restarted
    successor does not share the machine (or a GPU's memory) with a stale training process. A
    stop request ends the wait: the shutdown kills whatever is left anyway."""
    deadline = time.monotonic() + LEFTOVER_KILL_TIMEOUT_S
    killed: set[int] = set()
    while leftovers := leftover_processes(children):
        for proc in leftovers:
            if proc.pid not in killed:
                killed.add(proc.pid)
                log.warning("killing pid %d (%s), left behind by the %s", proc.pid,
                            _describe(proc), dead_name)
            _kill(proc)
        if signals.stop_requested:
            return
        if time.monotonic() >= deadline:
            pids = ", ".join(str(proc.pid) for proc in leftovers)
            log.error("processes %s survived SIGKILL (stuck in uninterruptible I/O?)", pids)
            return
        time.sleep(POLL_S)


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
        alive = [proc for proc in tree.values() if is_alive(proc)]
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


def is_alive(proc: psutil.Process) -> bool:
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
