"""The log of each attempt of a job: where it lives, which attempts have one, and reading it
back (its last lines within a byte cap, or what was written after an offset).

The worker writes them: the training child's stdout and stderr go to
`DATA_DIR/logs/<job id>/attempt-<n>.log` (worker/supervisor.py). The API reads them
(api/routes/logs.py). The path is built from a UUID and an int only, never from user text.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import BinaryIO

BLOCK = 64 * 1024


def attempt_log_path(log_dir: Path, job_id: uuid.UUID, attempt: int) -> Path:
    return log_dir / str(job_id) / f"attempt-{int(attempt)}.log"


def attempts_with_log(log_dir: Path, job_id: uuid.UUID, last_attempt: int) -> list[int]:
    """The attempts 1..last_attempt whose log file is on disk, oldest first."""
    return [n for n in range(1, last_attempt + 1)
            if attempt_log_path(log_dir, job_id, n).is_file()]


def tail_offset(file: BinaryIO, size: int, lines: int | None, max_bytes: int) -> int:
    """Where to start reading so as to send the last `lines` lines (all when None) of the
    first `size` bytes, and at most their last `max_bytes`. A start past 0 is at the
    beginning of a line, unless one line alone is longer than the cap."""
    floor = max(0, size - max_bytes)
    if lines is not None:
        seen = 0
        pos = size
        while pos > floor:
            start = max(floor, pos - BLOCK)
            file.seek(start)
            block = file.read(pos - start)
            end = len(block)
            if pos == size and block.endswith(b"\n"):
                end -= 1  # the last line's own newline does not begin another line
            found = block.count(b"\n", 0, end)
            if seen + found < lines:  # the line wanted is further back: skip the block
                seen += found
                pos = start
                continue
            while (i := block.rfind(b"\n", 0, end)) >= 0:
                end = i
                seen += 1
                if seen == lines:
                    return start + i + 1
            pos = start
    if floor == 0:
        return 0
    # The cap falls inside a line: start at the next whole one.
    file.seek(floor - 1)
    pos = floor - 1
    while pos < size - 1:
        block = file.read(min(BLOCK, size - 1 - pos))
        if not block:
            break
        i = block.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(block)
    return floor
