"""initial schema: job, metric_key, metric, checkpoint

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

EMPTY_JSON = sa.text("'{}'::jsonb")


def upgrade() -> None:
    op.create_table(
        "job",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", postgresql.JSONB(), nullable=False),
        sa.Column("state", sa.String(16), server_default="queued", nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="3", nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("progress", postgresql.JSONB(), server_default=EMPTY_JSON, nullable=False),
        sa.Column("summary", postgresql.JSONB(), server_default=EMPTY_JSON, nullable=False),
        sa.Column("model_summary", postgresql.JSONB(), server_default=EMPTY_JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "state IN ('queued','running','succeeded','failed','cancelled')", name="ck_job_state"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_job"),
        sa.UniqueConstraint("idempotency_key", name="uq_job_idempotency_key"),
    )
    op.create_index("ix_job_created_at_id", "job", ["created_at", "id"])
    op.create_index("ix_job_state_created_at_id", "job", ["state", "created_at", "id"])

    op.create_table(
        "metric_key",
        sa.Column("id", sa.SmallInteger(), sa.Identity(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metric_key"),
        sa.UniqueConstraint("name", name="uq_metric_key_name"),
    )

    op.create_table(
        "metric",
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("key_id", sa.SmallInteger(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("wall_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name="fk_metric_job_id_job", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["key_id"], ["metric_key.id"], name="fk_metric_key_id_metric_key"),
        sa.PrimaryKeyConstraint("job_id", "key_id", "step", name="pk_metric"),
    )

    op.create_table(
        "checkpoint",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("metrics", postgresql.JSONB(), server_default=EMPTY_JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name="fk_checkpoint_job_id_job", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoint"),
    )
    op.create_index("ix_checkpoint_job_id_step", "checkpoint", ["job_id", "step"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_checkpoint_job_id_step", table_name="checkpoint")
    op.drop_table("checkpoint")
    op.drop_table("metric")
    op.drop_table("metric_key")
    op.drop_index("ix_job_state_created_at_id", table_name="job")
    op.drop_index("ix_job_created_at_id", table_name="job")
    op.drop_table("job")
