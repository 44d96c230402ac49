"""api keys and owners: the api_key table; job.owner and dataset.owner

Rows from before keys existed belong to owner `local` (the owner of every request while
TRAINDOCK_AUTH=off); an admin key sees them. Dataset names and Idempotency-Keys become unique
per owner instead of across the service.

Revision ID: 0007_api_keys
Revises: 0006_webhooks
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_api_keys"
down_revision = "0006_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("scopes", postgresql.JSONB(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_key"),
        sa.UniqueConstraint("name", name="uq_api_key_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_key_token_hash"),
    )
    op.add_column("job", sa.Column("owner", sa.String(100), server_default="local",
                                   nullable=False))
    op.drop_constraint("uq_job_idempotency_key", "job", type_="unique")
    op.create_unique_constraint("uq_job_owner_idempotency_key", "job",
                                ["owner", "idempotency_key"])
    op.create_index("ix_job_owner_created_at_id", "job", ["owner", "created_at", "id"])
    op.add_column("dataset", sa.Column("owner", sa.String(100), server_default="local",
                                       nullable=False))
    op.drop_constraint("uq_dataset_name", "dataset", type_="unique")
    op.create_unique_constraint("uq_dataset_owner_name", "dataset", ["owner", "name"])


def downgrade() -> None:
    # Names that two owners share cannot go back to one namespace: the unique constraint
    # below then fails, and says which name; rename or delete one of them first.
    op.drop_constraint("uq_dataset_owner_name", "dataset", type_="unique")
    op.create_unique_constraint("uq_dataset_name", "dataset", ["name"])
    op.drop_column("dataset", "owner")
    op.drop_index("ix_job_owner_created_at_id", table_name="job")
    op.drop_constraint("uq_job_owner_idempotency_key", "job", type_="unique")
    op.create_unique_constraint("uq_job_idempotency_key", "job", ["idempotency_key"])
    op.drop_column("job", "owner")
    op.drop_table("api_key")
