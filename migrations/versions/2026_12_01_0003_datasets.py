"""datasets: the dataset table (uploaded and imported datasets)

Revision ID: 0003_datasets
Revises: 0002_leases_and_workers
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_datasets"
down_revision = "0002_leases_and_workers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("input_shape", postgresql.JSONB(), nullable=False),
        sa.Column("target_shape", postgresql.JSONB(), nullable=False),
        sa.Column("num_classes", sa.Integer(), nullable=True),
        sa.Column("class_names", postgresql.JSONB(), nullable=True),
        sa.Column("class_counts", postgresql.JSONB(), nullable=True),
        sa.Column("splits", postgresql.JSONB(), nullable=False),
        sa.Column("feature_stats", postgresql.JSONB(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("source", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dataset"),
        sa.UniqueConstraint("name", name="uq_dataset_name"),
    )
    op.create_index("ix_dataset_sha256", "dataset", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_dataset_sha256", table_name="dataset")
    op.drop_table("dataset")
