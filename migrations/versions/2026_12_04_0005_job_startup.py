"""job.startup: the latest attempt's start-up breakdown (worker/startup.py)

A JSONB column on the job rather than columns per phase or an attempt table: the breakdown
is written once per attempt and read whole with the job (GET /v1/jobs/{id}), never filtered
or aggregated in SQL, and its phases may change with the child without a migration.

Revision ID: 0005_job_startup
Revises: 0004_metric_rollup
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_job_startup"
down_revision = "0004_metric_rollup"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job", sa.Column("startup", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("job", "startup")
