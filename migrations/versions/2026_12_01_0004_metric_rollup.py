"""metric_rollup: per-block aggregates of every series, for fast downsampled reads

Revision ID: 0004_metric_rollup
Revises: 0003_datasets
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_metric_rollup"
down_revision = "0003_datasets"
branch_labels = None
depends_on = None

# core/repo/rollups.py's ROLLUP_LEVELS as of this revision; a migration stays as written.
LEVELS = (4, 7, 10, 13, 16)

COLUMNS = "job_id, key_id, level, block, n, vmin, vmax, vsum, last_step, last_value, last_epoch"


def _backfill_sql(level: int, finer: int | None) -> str:
    """Every existing point's blocks at `level`: the finest from the points, each coarser
    one from the level below (8 rows into 1, instead of reading every point again)."""
    if finer is None:
        return f"""
            INSERT INTO metric_rollup ({COLUMNS})
            SELECT job_id, key_id, {level}, step >> {level}, count(*), min(value), max(value),
                   sum(value), max(step), (array_agg(value ORDER BY step DESC))[1],
                   (array_agg(epoch ORDER BY step DESC))[1]
            FROM metric GROUP BY job_id, key_id, step >> {level}
        """
    shift = level - finer
    return f"""
        INSERT INTO metric_rollup ({COLUMNS})
        SELECT job_id, key_id, {level}, block >> {shift}, sum(n), min(vmin), max(vmax),
               sum(vsum), max(last_step), (array_agg(last_value ORDER BY last_step DESC))[1],
               (array_agg(last_epoch ORDER BY last_step DESC))[1]
        FROM metric_rollup WHERE level = {finer} GROUP BY job_id, key_id, block >> {shift}
    """


def upgrade() -> None:
    op.create_table(
        "metric_rollup",
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("key_id", sa.SmallInteger(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("vmin", sa.Double(), nullable=False),
        sa.Column("vmax", sa.Double(), nullable=False),
        sa.Column("vsum", sa.Double(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.Column("last_value", sa.Double(), nullable=False),
        sa.Column("last_epoch", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name="fk_metric_rollup_job_id_job", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["metric_key.id"], name="fk_metric_rollup_key_id_metric_key"
        ),
        sa.PrimaryKeyConstraint("job_id", "key_id", "level", "block", name="pk_metric_rollup"),
    )
    for level, finer in zip(LEVELS, (None, *LEVELS), strict=False):
        op.execute(_backfill_sql(level, finer))


def downgrade() -> None:
    op.drop_table("metric_rollup")
