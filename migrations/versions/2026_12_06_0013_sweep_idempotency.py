"""Sweeps: an `Idempotency-Key` per owner, as jobs have (a retried POST /v1/sweeps returns the
sweep the first one created); the importances cache column goes, because GET /v1/sweeps/{id}
no longer writes (the API computes importances on read and keeps them in process memory).

Revision ID: 0013_sweep_idempotency
Revises: 0012_names_and_evaluation
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013_sweep_idempotency"
down_revision = "0012_names_and_evaluation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sweep", sa.Column("idempotency_key", sa.String(200), nullable=True))
    op.create_unique_constraint("uq_sweep_owner_idempotency_key", "sweep",
                                ["owner", "idempotency_key"])
    op.drop_column("sweep", "importances")


def downgrade() -> None:
    op.add_column("sweep", sa.Column("importances", postgresql.JSONB(), nullable=True))
    op.drop_constraint("uq_sweep_owner_idempotency_key", "sweep", type_="unique")
    op.drop_column("sweep", "idempotency_key")
