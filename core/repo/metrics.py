"""Metric points: batched writes with COPY; reads downsampled in SQL, read incrementally,
or exported as CSV."""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, delete, select, text
from sqlalchemy.orm import Session

from core.points import Point
from core.repo import downsample
from core.repo.rollups import merge_inserted_sql, rebuild_rollups
from core.tables import Metric, MetricKey


def metric_key_ids(conn: Connection, names: Sequence[str]) -> dict[str, int]:
    cur = conn.connection.driver_connection.cursor()
    cur.execute(
        "INSERT INTO metric_key (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
        (list(names),),
    )
    cur.execute("SELECT name, id FROM metric_key WHERE name = ANY(%s)", (list(names),))
    return dict(cur.fetchall())


# One statement: the fenced insert, and the rollups of exactly the rows it inserted.
_WRITE_SQL = f"""
WITH inserted AS (
    INSERT INTO metric (job_id, key_id, step, value, epoch, wall_time)
    SELECT %(job)s, key_id, step, value, epoch, wall_time FROM metric_in
    WHERE EXISTS (SELECT 1 FROM job WHERE id = %(job)s AND attempt = %(attempt)s
                  AND state = 'running')
    ON CONFLICT DO NOTHING
    RETURNING key_id, step, value, epoch
),
{merge_inserted_sql("inserted", "%(job)s")}
SELECT count(*) FROM inserted
"""


def write_points(
    conn: Connection, job_id: uuid.UUID, attempt: int, points: Sequence[Point],
    key_ids: dict[str, int],
) -> int:
    """COPY the points into a staging table, then insert them only if `attempt` still owns the
    job, so a stale attempt can never add rows, and merge the rows it did insert into their
    rollups. Returns the number of rows written."""
    cur = conn.connection.driver_connection.cursor()
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS metric_in (key_id smallint, step bigint, "
        "value double precision, epoch integer, wall_time timestamptz) ON COMMIT DELETE ROWS"
    )
    with cur.copy("COPY metric_in (key_id, step, value, epoch, wall_time) FROM STDIN") as copy:
        for p in points:
            copy.write_row((key_ids[p.name], p.step, p.value, p.epoch, p.wall_time))
    cur.execute(_WRITE_SQL, {"job": job_id, "attempt": attempt})
    return cur.fetchone()[0]


DEFAULT_MAX_POINTS = 2000


def _without_jit(session: Session) -> None:
    """The planner prices the range scans as if each read the whole series, and past
    jit_above_cost PostgreSQL spends a second compiling a query that runs in a fraction of
    that. LOCAL: the setting ends with the transaction."""
    session.execute(text("SET LOCAL jit = off"))


def read_series(
    session: Session, job_id: uuid.UUID, names: Sequence[str] | None, since_step: int,
    max_points: int = DEFAULT_MAX_POINTS,
) -> dict[str, dict[str, list]]:
    """Every series (or those named) after since_step, in step order: as stored when it has at
    most max_points points there, else downsampled to at most max_points buckets of steps
    aligned to a multiple of their width (core/repo/downsample.py), each given by the
    `step`, `value` and `epoch` of its last point and the bucket's `min`, `max` and `mean`,
    with `downsampled: True`."""
    sql, params = downsample.series_query(job_id, names, since_step, max_points)
    _without_jit(session)
    rows = session.execute(text(sql), params)
    series: dict[str, dict[str, list]] = {}
    for name, step, value, epoch, vmin, vmax, vmean in rows:
        entry = series.get(name)
        if entry is None:
            entry = series[name] = {"step": [], "value": [], "epoch": []}
            if vmin is not None:
                entry.update({"min": [], "max": [], "mean": [], "downsampled": True})
        entry["step"].append(step)
        entry["value"].append(value)
        entry["epoch"].append(epoch)
        if vmin is not None:
            entry["min"].append(vmin)
            entry["max"].append(vmax)
            entry["mean"].append(vmean)
    return series


def last_step(session: Session, job_id: uuid.UUID) -> int | None:
    """The highest step stored for the job, by one index probe per metric name (a plain
    max(step) would read every point of the job)."""
    return session.execute(text(
        "SELECT max(m.step) FROM metric_key k CROSS JOIN LATERAL ("
        "SELECT step FROM metric WHERE job_id = :job AND key_id = k.id "
        "ORDER BY step DESC LIMIT 1) m"
    ), {"job": job_id}).scalar()


def logged_names(session: Session, job_id: uuid.UUID) -> list[str]:
    """The names the job has at least one point of, sorted: one index probe per name."""
    return list(session.execute(text(
        "SELECT k.name FROM metric_key k WHERE EXISTS ("
        "SELECT 1 FROM metric WHERE job_id = :job AND key_id = k.id) ORDER BY k.name"
    ), {"job": job_id}).scalars())


def read_new_points(
    session: Session, job_id: uuid.UUID, after: int, upto: int, per_series: int
) -> tuple[dict[str, dict[str, list]], int]:
    """Points with after < step <= upto, at most per_series per series, and the step through
    which every point has now been returned: `upto`, or less when a series was cut short, so
    that asking again from there yields each point exactly once."""
    rows = session.execute(text(
        "SELECT k.name, m.step, m.value, m.epoch FROM metric_key k CROSS JOIN LATERAL ("
        "SELECT step, value, epoch FROM metric WHERE job_id = :job AND key_id = k.id "
        "AND step > :after AND step <= :upto ORDER BY step LIMIT :limit) m "
        "ORDER BY k.name COLLATE \"C\", m.step"
    ), {"job": job_id, "after": after, "upto": upto, "limit": per_series})
    series: dict[str, dict[str, list]] = {}
    for name, step, value, epoch in rows:
        entry = series.setdefault(name, {"step": [], "value": [], "epoch": []})
        entry["step"].append(step)
        entry["value"].append(value)
        entry["epoch"].append(epoch)
    # A series that filled its quota may have more points further on; the others are
    # complete, so the answer is complete up to the lowest last step of the cut series.
    complete = min((e["step"][-1] for e in series.values() if len(e["step"]) == per_series),
                   default=upto)
    if complete < upto:
        for name, entry in list(series.items()):
            keep = bisect.bisect_right(entry["step"], complete)
            for column in entry.values():
                del column[keep:]
            if not keep:
                del series[name]
    return series, complete


def delete_points_after(session: Session, job_id: uuid.UUID, step: int) -> int:
    """Drop what an interrupted attempt logged past the checkpoint a new attempt resumes from,
    and recompute the rollup blocks that held any of it."""
    result = session.execute(delete(Metric).where(Metric.job_id == job_id, Metric.step > step))
    if result.rowcount:  # nothing deleted (a first attempt): the rollups are still right
        rebuild_rollups(session, job_id, after_step=step)
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


CSV_HEADER = "name,step,epoch,value,wall_time"

# COPY does the formatting (shortest exact floats, CSV quoting) and streams rows as the
# client reads them, so an export of millions of points is never held in memory. One COPY
# per series, each read in step order straight off the primary key: a single statement
# ordered by name and step would sort every point of the job first.
_CSV_SQL = """
COPY (
    SELECT %(name)s, step, epoch, value,
           to_char(wall_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    FROM metric WHERE job_id = %(job)s AND key_id = %(key)s ORDER BY step
) TO STDOUT WITH (FORMAT csv)
"""


def export_csv(
    conn: Connection, job_id: uuid.UUID, names: Sequence[str] | None, chunk_bytes: int = 1 << 16
) -> Iterator[bytes]:
    """The job's points as CSV, CSV_HEADER first, ordered by name (bytewise) then step, in
    chunks of about chunk_bytes (COPY sends one message per row, too small to pass on one by
    one). Run it in a REPEATABLE READ transaction for one snapshot across the series."""
    name_filter = "AND k.name = ANY(:names)" if names else ""
    keys = conn.execute(text(
        "SELECT k.id, k.name FROM metric_key k WHERE EXISTS ("
        f"SELECT 1 FROM metric WHERE job_id = :job AND key_id = k.id) {name_filter} "
        "ORDER BY k.name COLLATE \"C\""
    ), {"job": job_id, "names": list(names or ())}).all()
    conn.execute(text("SET LOCAL jit = off"))  # see _without_jit
    cur = conn.connection.driver_connection.cursor()
    buffer = bytearray(f"{CSV_HEADER}\n".encode())
    for key_id, name in keys:
        with cur.copy(_CSV_SQL, {"name": name, "job": job_id, "key": key_id}) as copy:
            for block in copy:
                buffer += block
                if len(buffer) >= chunk_bytes:
                    yield bytes(buffer)
                    buffer.clear()
    if buffer:
        yield bytes(buffer)
