"""One piece of work at a time in a thread of its own, while the training loop goes on."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Behind:
    """Runs a function in a background thread, one at a time: `start` first waits for the
    previous one. Its exception is raised in the caller's thread, at the next `check` or
    `wait`, so that a failure stops the loop as if the work had run in line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, work: Callable[[], object]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(work,), name=self.name,
                                        daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], object]) -> None:
        try:
            work()
        except BaseException as exc:  # handed to the loop's thread
            self._error = exc

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check(self) -> None:
        """Raise the exception of work that has ended, if it failed."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def wait(self) -> None:
        """Wait for the work in progress, then `check`."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.check()
