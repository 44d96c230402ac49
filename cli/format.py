"""How the client verbs write numbers, times and tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

# the metric that says most about a job, in order of preference
HEADLINE_METRICS = ("val_accuracy", "val_rmse", "val_loss", "train_loss")


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def seconds_between(start: str | None, end: str | None = None) -> float | None:
    """Seconds from the API timestamp `start` to `end` (default: now)."""
    began = parse_time(start)
    if began is None:
        return None
    ended = parse_time(end) or datetime.now(UTC)
    return max(0.0, (ended - began).total_seconds())


def format_value(value: Any) -> str:
    """A metric value: four significant digits, thousands whole and grouped."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def format_duration(seconds: float | None) -> str:
    """0:07, 12:30, 1:02:03."""
    if seconds is None:
        return "-"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_age(seconds: float | None) -> str:
    """45s, 12m, 3h, 2d: how long ago."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def headline_metric(summary: dict[str, Any]) -> tuple[str, float] | None:
    """The best value of the first of HEADLINE_METRICS the job has recorded."""
    best = summary.get("best") or {}
    for name in HEADLINE_METRICS:
        if name in best:
            return name, best[name]["value"]
    return None


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                 right: Sequence[int] = ()) -> str:
    """Columns two spaces apart; the columns numbered in `right` are right-aligned."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    return "\n".join(line(row) for row in [header, *rows])
