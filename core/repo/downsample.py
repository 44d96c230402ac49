"""The one statement behind read_series: every wanted series after since_step, as stored when
it is short, else in aligned buckets aggregated from the rollup table (core/repo/rollups.py).

A long series is cut into buckets of `bw` steps aligned to multiples of bw, so that a
bucket's edges stay put as the series grows and a polled chart does not shimmer: only the
last bucket changes, until the series outgrows bw. bw is the smallest of bucket_widths()
(or past them, of the multiples of the coarsest block size) that covers the series' steps
after since_step in at most max_points buckets. Under the finest block size the buckets are
read from the points (at most 16 * max_points of them). From there on a width is at most
MAX_BLOCKS_PER_BUCKET blocks of the largest level whose block size divides it, so that a
read of any length touches at most that many rollup rows per bucket. Allowing every
multiple of 16 would make the buckets finer, but 63 * 16 (the smallest such width for a
million points in 1000 buckets) reads 62,500 16-step blocks, 64 times the 977 1024-step
blocks of the width 1024 chosen here, and the more the longer the series grows. The
price: consecutive widths lie up to 2x apart (16 and 32) and mostly 1.5x at most, so a long
series gets from about half to all of max_points buckets.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from core.repo.rollups import ROLLUP_LEVELS

MAX_BLOCKS_PER_BUCKET = 16
_FIRST, _TOP = ROLLUP_LEVELS[0], ROLLUP_LEVELS[-1]
_NO_END = 9223372036854775807


def bucket_widths() -> dict[int, int]:
    """Each width under the coarsest level's range, with the largest level whose block size
    divides it (0 under the finest block size: no level, read the points)."""
    levels = {width: 0 for width in range(1, 1 << _FIRST)}
    for level in ROLLUP_LEVELS[:-1]:
        for blocks in range(1, MAX_BLOCKS_PER_BUCKET + 1):
            levels[blocks << level] = level  # levels ascend: the largest one is written last
    return levels


_WIDTHS = bucket_widths()

# The rollup rows that, with the points after since_step of the finest block straddling it,
# cover exactly the steps after since_step: at level `cap`, every block from the first that
# starts after since_step; at each finer level, the blocks from there up to where the next
# level's first such block starts. (Up to 15 points and 7 blocks per finer level.)
_LEVEL_RANGES = """unnest(CAST(:levels AS integer[]), CAST(:next_levels AS integer[]))
        AS r(level, next_level)"""
_BLOCK_RANGE = """job_id = :job AND key_id = {series}.id AND level = r.level
            AND block >= (CAST(:since AS bigint) >> r.level) + 1
            AND block < CASE WHEN r.level < {cap}
                THEN ((CAST(:since AS bigint) >> r.next_level) + 1) << (r.next_level - r.level)
                ELSE {no_end} END"""
_STRADDLING_POINTS = f"""job_id = :job AND key_id = {{series}}.id AND step > :since
            AND step < ((CAST(:since AS bigint) >> {_FIRST}) + 1) << {_FIRST}"""

# Every part is a primary-key probe or range scan, so that the planner has no join to
# reorder: without table statistics it once chose a plan 400x slower. (OFFSET 0 keeps a
# LATERAL subquery from being flattened into a join, which the planner, guessing a few rows
# per scan, would run as a hash join over every row of the series.) Index probes find each
# series' first and last step after since_step; `sized` counts its points there from the
# rollups (an OFFSET max_points probe of the points, planned without statistics, became a
# bitmap scan and a sort of the whole series). A short series comes back as stored. For a
# long one, `width` picks bw and the level, and `pieces` holds its rollup rows and
# straddling points, a few thousand rows at most, grouped by bucket: each non-empty bucket
# answers its last point (so the line ends where the series ends) with its min, max and mean
# (so a spike survives). Steps are never negative (the training loop counts from 0), so
# integer division numbers the buckets. Names are ordered bytewise (COLLATE "C"): the same
# order on every server, whatever its locale.
_SERIES_SQL = f"""
WITH wanted AS (
    SELECT id, name FROM metric_key {{name_filter}}
),
span AS MATERIALIZED (
    SELECT w.id, w.name, head.step AS lo, tail.step AS hi
    FROM wanted w
    CROSS JOIN LATERAL (
        SELECT step FROM metric WHERE job_id = :job AND key_id = w.id AND step > :since
        ORDER BY step LIMIT 1
    ) head
    CROSS JOIN LATERAL (
        SELECT step FROM metric WHERE job_id = :job AND key_id = w.id
        ORDER BY step DESC LIMIT 1
    ) tail
),
sized AS MATERIALIZED (
    SELECT s.id, s.name, s.lo, s.hi, CASE WHEN s.hi - s.lo < :max_points THEN false ELSE
        (SELECT count(*) FROM metric WHERE {_STRADDLING_POINTS.format(series="s")})
        + coalesce((SELECT sum(x.n) FROM {_LEVEL_RANGES} CROSS JOIN LATERAL (
            SELECT n FROM metric_rollup WHERE {_BLOCK_RANGE.format(series="s", cap=_TOP,
                                                                   no_end=_NO_END)}
            OFFSET 0
        ) x), 0) > :max_points END AS long
    FROM span s
),
width AS MATERIALIZED (
    SELECT s.id, s.name, pick.bw, pick.level
    FROM sized s
    CROSS JOIN LATERAL (
        SELECT c.bw, c.level FROM (
            SELECT * FROM unnest(CAST(:widths AS bigint[]), CAST(:width_levels AS integer[]))
                AS t(bw, level)
            UNION ALL
            -- From the fewest top-level blocks that could hold the span in max_points
            -- buckets to as many as surely do.
            SELECT m << {_TOP}, {_TOP} FROM generate_series(
                (s.hi - s.lo) / (CAST(:max_points AS bigint) << {_TOP}) + 1,
                CASE WHEN :max_points = 1 THEN (s.hi >> {_TOP}) + 1
                     ELSE ((s.hi - s.lo) / (CAST(:max_points AS bigint) - 1) >> {_TOP}) + 1 END
            ) AS m
        ) c
        WHERE s.hi / c.bw - s.lo / c.bw < :max_points
        ORDER BY c.bw, c.level DESC LIMIT 1
    ) pick
    WHERE s.long
),
pieces AS (
    SELECT w.name, w.bw, x.n, x.vmin, x.vmax, x.vsum, x.last_step, x.last_value, x.last_epoch
    FROM width w
    JOIN {_LEVEL_RANGES} ON r.level <= w.level
    CROSS JOIN LATERAL (
        SELECT n, vmin, vmax, vsum, last_step, last_value, last_epoch FROM metric_rollup
        WHERE {_BLOCK_RANGE.format(series="w", cap="w.level", no_end=_NO_END)}
        OFFSET 0
    ) x
    UNION ALL
    SELECT w.name, w.bw, 1, m.value, m.value, m.value, m.step, m.value, m.epoch
    FROM width w
    CROSS JOIN LATERAL (
        SELECT step, value, epoch FROM metric WHERE w.level > 0
            AND {_STRADDLING_POINTS.format(series="w")}
        UNION ALL
        SELECT step, value, epoch FROM metric WHERE w.level = 0
            AND job_id = :job AND key_id = w.id AND step > :since
        OFFSET 0
    ) m
)
SELECT p.name COLLATE "C", max(p.last_step),
       (max(ARRAY[CAST(p.last_step AS double precision), p.last_value, p.last_epoch]))[2],
       CAST((max(ARRAY[CAST(p.last_step AS double precision), p.last_value, p.last_epoch]))[3]
            AS integer),
       min(p.vmin), max(p.vmax), sum(p.vsum) / sum(p.n)
FROM pieces p
GROUP BY p.name, p.bw, p.last_step / p.bw
UNION ALL
SELECT s.name, m.step, m.value, m.epoch, NULL, NULL, NULL
FROM sized s
CROSS JOIN LATERAL (
    SELECT step, value, epoch FROM metric WHERE job_id = :job AND key_id = s.id AND step > :since
    OFFSET 0
) m
WHERE NOT s.long
ORDER BY 1, 2
"""


def series_query(
    job_id: uuid.UUID, names: Sequence[str] | None, since_step: int, max_points: int
) -> tuple[str, dict[str, Any]]:
    """The statement and its parameters. Each row: name, step, value, epoch, then min, max and
    mean (NULL for a series returned as stored), ordered by name and step."""
    name_filter = "WHERE name = ANY(:names)" if names else ""
    params = {"job": job_id, "since": since_step, "max_points": max_points,
              "names": list(names or ()), "widths": list(_WIDTHS),
              "width_levels": list(_WIDTHS.values()), "levels": list(ROLLUP_LEVELS),
              "next_levels": [*ROLLUP_LEVELS[1:], _TOP]}
    return _SERIES_SQL.format(name_filter=name_filter), params
