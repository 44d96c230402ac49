"""The metric_rollup table: per series, the count, min, max, sum and last point of every
aligned block of 2**level steps, for each level in ROLLUP_LEVELS. write_points keeps it up to
date as points arrive; rebuild_rollups recomputes it from the raw points for any other
write (a bulk load, a resumed attempt's trim). A downsampled read aggregates these rows
instead of every point (core/repo/downsample.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

# log2 of the block sizes: 16, 128, 1024, 8192 and 65536 steps. Each level is 8x coarser
# than the one below, so a downsampled bucket is at most 16 rows of some level, and a
# 5,000-point flush touches a few hundred rollup rows (most of them at the finest level).
ROLLUP_LEVELS = (4, 7, 10, 13, 16)

_COLUMNS = "job_id, key_id, level, block, n, vmin, vmax, vsum, last_step, last_value, last_epoch"
_LAST_COLUMNS = "CAST(last[1] AS bigint), last[2], CAST(last[3] AS integer)"

# The last point of a group is the largest [step, value, epoch] array: steps are unique in a
# series, so the step alone decides, and a double holds every step and epoch exactly. It is
# a plain aggregate, so the groups can be hashed; array_agg(value ORDER BY step DESC) would
# sort every group's rows on their own (PostgreSQL has no last() aggregate): twice the time
# in a 5,000-point flush.
_FROM_POINTS = """
    SELECT key_id, step >> {level} AS block, CAST(count(*) AS integer) AS n,
           min(value) AS vmin, max(value) AS vmax, sum(value) AS vsum,
           max(ARRAY[CAST(step AS double precision), value, epoch]) AS last
    FROM {source} GROUP BY key_id, step >> {level}
"""

# A coarser level from the finer one below it: 8 blocks into 1, so no level reads the points.
_FROM_BLOCKS = """
    SELECT key_id, block >> {shift} AS block, CAST(sum(n) AS integer) AS n,
           min(vmin) AS vmin, max(vmax) AS vmax, sum(vsum) AS vsum, max(last) AS last
    FROM {source} GROUP BY key_id, block >> {shift}
"""

# New points merged into stored blocks: counts and sums add up, extremes widen, and the last
# point is whichever of the two lies further on.
_MERGE = """
ON CONFLICT (job_id, key_id, level, block) DO UPDATE SET
    n = metric_rollup.n + excluded.n,
    vmin = least(metric_rollup.vmin, excluded.vmin),
    vmax = greatest(metric_rollup.vmax, excluded.vmax),
    vsum = metric_rollup.vsum + excluded.vsum,
    last_step = greatest(metric_rollup.last_step, excluded.last_step),
    last_value = CASE WHEN excluded.last_step > metric_rollup.last_step
                      THEN excluded.last_value ELSE metric_rollup.last_value END,
    last_epoch = CASE WHEN excluded.last_step > metric_rollup.last_step
                      THEN excluded.last_epoch ELSE metric_rollup.last_epoch END
"""


def merge_inserted_sql(inserted: str, job: str) -> str:
    """Common table expressions (to follow the WITH clause that defines `inserted`, a
    data-modifying CTE returning key_id, step, value and epoch of the rows it inserted) that
    merge those rows into every rollup level of job `job` (a bind parameter). Only rows
    actually inserted are counted, so a point the insert skipped as a duplicate never is."""
    ctes = [f"rollup_{ROLLUP_LEVELS[0]} AS ("
            f"{_FROM_POINTS.format(level=ROLLUP_LEVELS[0], source=inserted)})"]
    for finer, level in zip(ROLLUP_LEVELS, ROLLUP_LEVELS[1:], strict=False):
        ctes.append(f"rollup_{level} AS ("
                    f"{_FROM_BLOCKS.format(shift=level - finer, source=f'rollup_{finer}')})")
    rows = "\nUNION ALL\n".join(
        f"SELECT {job}, key_id, {level}, block, n, vmin, vmax, vsum, {_LAST_COLUMNS} "
        f"FROM rollup_{level}" for level in ROLLUP_LEVELS)
    ctes.append(f"rollup_merged AS (INSERT INTO metric_rollup ({_COLUMNS})\n{rows}\n{_MERGE})")
    return ",\n".join(ctes)


# Every key's rows of the job, read per key by index range (metric_key is small): a
# condition on job_id alone would scan all of the job's rows for the blocks of one level.
_EVERY_KEY = "key_id = ANY(ARRAY(SELECT id FROM metric_key))"

_DELETE_SQL = (f"DELETE FROM metric_rollup WHERE job_id = :job AND {_EVERY_KEY} "
               "AND level = :level AND block >= :first_block")

_POINTS = """(
    SELECT k.id AS key_id, m.step, m.value, m.epoch FROM metric_key k CROSS JOIN LATERAL (
        SELECT step, value, epoch FROM metric
        WHERE job_id = :job AND key_id = k.id AND step >= :first_step OFFSET 0
    ) m) AS points"""

_FINER_BLOCKS = f"""(
    SELECT key_id, block, n, vmin, vmax, vsum,
           ARRAY[CAST(last_step AS double precision), last_value, last_epoch] AS last
    FROM metric_rollup WHERE job_id = :job AND {_EVERY_KEY} AND level = :finer
    AND block >= :first_finer) AS finer"""


def _rebuild_sql(level: int, finer: int | None) -> str:
    """The INSERT that recomputes the job's blocks of `level` from :first_block on, from the
    raw points (the finest level) or from the level below."""
    if finer is None:
        blocks = _FROM_POINTS.format(level=level, source=_POINTS)
    else:
        blocks = _FROM_BLOCKS.format(shift=level - finer, source=_FINER_BLOCKS)
    return (f"INSERT INTO metric_rollup ({_COLUMNS}) SELECT :job, key_id, {level}, block, n, "
            f"vmin, vmax, vsum, {_LAST_COLUMNS} FROM ({blocks}) AS blocks")


_REBUILD = [(level, finer, _rebuild_sql(level, finer))
            for level, finer in zip(ROLLUP_LEVELS, (None, *ROLLUP_LEVELS), strict=False)]


def rebuild_rollups(db: Connection | Session, job_id: uuid.UUID, after_step: int = -1) -> None:
    """Recompute, from the job's raw points, every rollup block that holds a step past
    after_step: after points were written into `metric` other than by write_points (a bulk
    COPY), or deleted from it. Blocks wholly at or before after_step are taken as right.
    Each level is built from the one below it, so only the finest reads the raw points,
    and of those only the ones from its first rebuilt block on."""
    for level, finer, insert in _REBUILD:
        first_block = after_step >> level  # floor, as PostgreSQL's >> on a negative step
        db.execute(text(_DELETE_SQL), {"job": job_id, "level": level, "first_block": first_block})
        if finer is None:
            params = {"job": job_id, "first_step": first_block << level}
        else:
            params = {"job": job_id, "finer": finer, "first_finer": first_block << (level - finer)}
        db.execute(text(insert), params)
