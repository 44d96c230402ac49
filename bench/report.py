"""What every benchmark prints around its numbers: the machine, the date, the command, a table.

Stable API:
    machine() -> str          CPU model, cores, memory, Python and torch versions, in one line
    header(title) -> str      a markdown heading with machine(), the UTC date and the command
    table(headers, rows) -> str   a markdown table; floats are printed with `fmt`
    median(xs), p99(xs)       of a non-empty sequence of numbers (p99: nearest rank)
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import shlex
import statistics
import sys
from collections.abc import Sequence


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return float("nan")


def machine() -> str:
    import torch  # only here: report.py must stay importable without paying for torch

    return (f"{_cpu_model()}, {os.cpu_count()} cores, {_memory_gib():.0f} GiB RAM, "
            f"Python {platform.python_version()}, torch {torch.__version__} "
            f"({torch.get_num_threads()} intra-op threads)")


def header(title: str) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python " + shlex.join(["bench/" + os.path.basename(sys.argv[0]), *sys.argv[1:]])
    return f"## {title}\n\n- machine: {machine()}\n- date: {now}\n- command: `{command}`\n"


def _cell(value: object, fmt: str) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else format(value, fmt)
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], fmt: str = ".3f") -> str:
    cells = [[_cell(v, fmt) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
             "| " + " | ".join("-" * w for w in widths) + " |"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
              for r in cells]
    return "\n".join(lines)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def p99(xs: Sequence[float]) -> float:
    ordered = sorted(xs)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
