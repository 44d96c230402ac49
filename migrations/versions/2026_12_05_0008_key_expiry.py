"""api keys that expire: api_key.expires_at

A key made with an expiry (`traindock keys create --expires-days N`, or `POST /v1/keys` with
`expires_in_days`) stops being accepted at that time, as a revoked one does. Keys from before
have none.

Revision ID: 0008_key_expiry
Revises: 0007_api_keys
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_key_expiry"
down_revision = "0007_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_key", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("api_key", "expires_at")
