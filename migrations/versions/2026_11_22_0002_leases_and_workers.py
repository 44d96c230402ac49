"""leases and workers: job.preemptions, job.published_at, the worker table

Revision ID: 0002_leases_and_workers
Revises: 0001_initial
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_leases_and_workers"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "job", sa.Column("preemptions", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("job", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_job_running_lease", "job", ["lease_expires_at"],
        postgresql_where=sa.text("state = 'running'"),
    )
    op.create_table(
        "worker",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("devices", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"),
                  nullable=False),
        sa.Column("current_job_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_worker"),
    )


def downgrade() -> None:
    op.drop_table("worker")
    op.drop_index("ix_job_running_lease", table_name="job")
    op.drop_column("job", "published_at")
    op.drop_column("job", "preemptions")
