"""core/processes.py, the plumbing that the worker's training children and `traindock up`'s
children share: a child started with die_with_parent is killed by the kernel when its parent
dies (real processes, SIGKILL to the parent), and describe_exit words every ending one way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from core.processes import describe_exit

PARENT = textwrap.dedent("""
    import os, subprocess, sys, time
    from core.processes import die_with_parent
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                             preexec_fn=die_with_parent(os.getpid()))
    print(child.pid, flush=True)
    time.sleep(120)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(2) is Linux only")
def test_a_child_dies_with_its_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE,
                              cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.is_running()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while _alive(child):
            assert time.monotonic() < deadline, "the child outlived its parent"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(("code", "words"), [
    (0, "exited with code 0"),
    (3, "exited with code 3"),
    (-9, "was killed by signal 9 (SIGKILL)"),
    (-15, "was killed by signal 15 (SIGTERM)"),
    (-200, "was killed by signal 200"),
])
def test_describe_exit(code: int, words: str) -> None:
    assert describe_exit(code) == words
