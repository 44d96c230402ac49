"""Metric points: batched writes with COPY, reads by name and step."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import Session

from core.tables import Metric, MetricKey


class Point(NamedTuple):
    name: str
    step: int
    value: float
    epoch: int
    wall_time: datetime


def metric_key_ids(conn: Connection, names: Sequence[str]) -> dict[str, int]:
    cur = conn.connection.driver_connection.cursor()
    cur.execute(
        "INSERT INTO metric_key (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
        (list(names),),
    )
    cur.execute("SELECT name, id FROM metric_key WHERE name = ANY(%s)", (list(names),))
    return dict(cur.fetchall())


def write_points(
    conn: Connection, job_id: uuid.UUID, attempt: int, points: Sequence[Point],
    key_ids: dict[str, int],
) -> int:
    """COPY the points into a staging table, then insert them only if `attempt` still owns the
    job, so a stale attempt can never add rows. Returns the number of rows written."""
    cur = conn.connection.driver_connection.cursor()
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS metric_in (key_id smallint, step bigint, "
        "value double precision, epoch integer, wall_time timestamptz) ON COMMIT DELETE ROWS"
    )
    with cur.copy("COPY metric_in (key_id, step, value, epoch, wall_time) FROM STDIN") as copy:
        for p in points:
            copy.write_row((key_ids[p.name], p.step, p.value, p.epoch, p.wall_time))
    cur.execute(
        "INSERT INTO metric (job_id, key_id, step, value, epoch, wall_time) "
        "SELECT %(job)s, key_id, step, value, epoch, wall_time FROM metric_in "
        "WHERE EXISTS (SELECT 1 FROM job WHERE id = %(job)s AND attempt = %(attempt)s "
        "AND state = 'running') ON CONFLICT DO NOTHING",
        {"job": job_id, "attempt": attempt},
    )
    return cur.rowcount


def read_series(
    session: Session, job_id: uuid.UUID, names: Sequence[str] | None, since_step: int,
    max_points: int,
) -> tuple[dict[str, dict[str, list]], int | None]:
    """Points with step > since_step, at most max_points per series, in step order.

    When a series is cut short, every series is cut at the same step, so that asking again
    with the returned since_step yields each point exactly once.
    """
    query = (
        select(MetricKey.name, Metric.step, Metric.value, Metric.epoch)
        .join(MetricKey, MetricKey.id == Metric.key_id)
        .where(Metric.job_id == job_id, Metric.step > since_step)
        .order_by(MetricKey.name, Metric.step)
    )
    if names:
        query = query.where(MetricKey.name.in_(names))
    series: dict[str, dict[str, list]] = {}
    next_since: int | None = None
    for name, step, value, epoch in session.execute(query):
        entry = series.setdefault(name, {"step": [], "value": [], "epoch": []})
        if len(entry["step"]) >= max_points:
            last = entry["step"][-1]
            next_since = last if next_since is None else min(next_since, last)
            continue
        entry["step"].append(step)
        entry["value"].append(value)
        entry["epoch"].append(epoch)
    if next_since is not None:
        for entry in series.values():
            keep = sum(1 for step in entry["step"] if step <= next_since)
            for column in entry.values():
                del column[keep:]
        series = {name: entry for name, entry in series.items() if entry["step"]}
    return series, next_since


def delete_points_after(session: Session, job_id: uuid.UUID, step: int) -> int:
    """Drop what an interrupted attempt logged past the checkpoint a new attempt resumes from."""
    result = session.execute(delete(Metric).where(Metric.job_id == job_id, Metric.step > step))
    return result.rowcount


def points_up_to(
    session: Session, job_id: uuid.UUID, step: int
) -> list[tuple[str, int, float, int]]:
    """(name, step, value, epoch) in step order: the history a resumed attempt rebuilds its
    summary from."""
    return [tuple(row) for row in session.execute(
        select(MetricKey.name, Metric.step, Metric.value, Metric.epoch)
        .join(MetricKey, MetricKey.id == Metric.key_id)
        .where(Metric.job_id == job_id, Metric.step <= step)
        .order_by(Metric.step)
    )]
