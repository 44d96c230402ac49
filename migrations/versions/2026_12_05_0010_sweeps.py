"""Sweeps: a `sweep` row per sweep, and on each of its trials' jobs the sweep, the trial's
number, its repeat (seed) and its values.

The search's state is these rows and nothing else: core/sweeps/driver.py rebuilds the Optuna
study from them on each step, so no Optuna tables are created.

Revision ID: 0010_sweeps
Revises: 0009_webhook_diagnosis
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010_sweeps"
down_revision = "0009_webhook_diagnosis"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweep",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("owner", sa.String(100), server_default="local", nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", postgresql.JSONB(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("asked", sa.Integer(), server_default="0", nullable=False),
        sa.Column("state", sa.String(16), server_default="queued", nullable=False),
        sa.Column("best", postgresql.JSONB(), nullable=True),
        sa.Column("importances", postgresql.JSONB(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued','running','succeeded','failed','cancelled')",
            name="ck_sweep_state",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sweep"),
    )
    op.create_index("ix_sweep_owner_created_at_id", "sweep", ["owner", "created_at", "id"])
    op.create_index("ix_sweep_active", "sweep", ["state"],
                    postgresql_where=sa.text("state IN ('queued','running')"))
    op.add_column("job", sa.Column(
        "sweep_id", postgresql.UUID(as_uuid=True),
        sa.ForeignKey("sweep.id", ondelete="CASCADE", name="fk_job_sweep_id_sweep"),
        nullable=True))
    op.add_column("job", sa.Column("trial_number", sa.Integer(), nullable=True))
    op.add_column("job", sa.Column("trial_repeat", sa.Integer(), nullable=True))
    op.add_column("job", sa.Column("trial_params", postgresql.JSONB(), nullable=True))
    op.create_index("ix_job_sweep_id", "job", ["sweep_id"])
    op.create_unique_constraint("uq_job_sweep_id_trial", "job",
                                ["sweep_id", "trial_number", "trial_repeat"])


def downgrade() -> None:
    op.drop_constraint("uq_job_sweep_id_trial", "job", type_="unique")
    op.drop_index("ix_job_sweep_id", table_name="job")
    op.drop_column("job", "trial_params")
    op.drop_column("job", "trial_repeat")
    op.drop_column("job", "trial_number")
    op.drop_column("job", "sweep_id")
    op.drop_index("ix_sweep_active", table_name="sweep")
    op.drop_index("ix_sweep_owner_created_at_id", table_name="sweep")
    op.drop_table("sweep")
