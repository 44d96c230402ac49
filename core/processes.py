"""Process plumbing shared by the worker's training children (worker/spawn.py) and the
children of `traindock up` (cli/supervise.py): tying a child's life to its parent's with
prctl(2), adopting orphans, and one wording for how a process ended.

Linux is the target; elsewhere the hooks do nothing and a child may outlive its parent.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Looked up once, at import, in the parent: the pre-exec hook runs between fork and exec,
# where loading a shared library can deadlock on the loader's lock.
_prctl = _load_prctl()


def die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen: the kernel SIGKILLs the child when the thread that
    started it (parent_pid, pass os.getpid()) ends. None where there is no prctl(2).

    The death signal follows the parent *thread*: start children from a thread that lives as
    long as they should."""
    if _prctl is None:
        return None
    prctl = _prctl

    def set_parent_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # If the parent died between fork and prctl, the death signal will never come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return set_parent_death_signal


def become_subreaper() -> str | None:
    """Orphans below this process (a training child whose worker died) are adopted by it
    instead of by init, so that its owner can find and kill them too. The reason it could not
    be done, or None (also where there is no prctl(2): nothing to adopt from there)."""
    if _prctl is None:
        return None
    if _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        return os.strerror(ctypes.get_errno())
    return None


def describe_exit(code: int) -> str:
    """How a process ended, from Popen.returncode, as the rest of a sentence that starts with
    what the process was: "exited with code 3", "was killed by signal 9 (SIGKILL)"."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            return f"was killed by signal {-code}"
        return f"was killed by signal {-code} ({name})"
    return f"exited with code {code}"
