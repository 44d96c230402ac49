"""Names and evaluation: dataset.feature_names, job.evaluation

An uploaded dataset keeps the name of each input feature (csv header columns, an npz's
`feature_names`); a finished job keeps its test split's evaluation (confusion matrix and
per-class metrics, or a sample of predicted against true values). Rows from before have
neither (null).

Revision ID: 0012_names_and_evaluation
Revises: 0011_pruned_state
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012_names_and_evaluation"
down_revision = "0011_pruned_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dataset", sa.Column("feature_names", postgresql.JSONB(), nullable=True))
    op.add_column("job", sa.Column("evaluation", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("job", "evaluation")
    op.drop_column("dataset", "feature_names")
