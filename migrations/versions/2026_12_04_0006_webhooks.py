"""Webhooks: a delivery row for each event of a job whose spec asks to be notified, and the
signing secrets.

The rows are written by a trigger on the job's state, so that every path that changes it
(the API's submit and cancel, a worker's claim and finish, the reaper) produces its event in
the same transaction as the change: an outbox, delivered by the workers (worker/webhooks.py)
and never lost between a state change and a delivery.

Revision ID: 0006_webhooks
Revises: 0005_job_startup
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_webhooks"
down_revision = "0005_job_startup"
branch_labels = None
depends_on = None

EVENT_FUNCTION = """
CREATE FUNCTION job_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_typeof(NEW.spec -> 'notify') = 'object'
       AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM NEW.state)
       AND (jsonb_typeof(NEW.spec -> 'notify' -> 'events') IS DISTINCT FROM 'array'
            OR (NEW.spec -> 'notify' -> 'events') ? NEW.state) THEN
        INSERT INTO webhook_delivery (job_id, event, url, payload)
        VALUES (NEW.id, NEW.state, NEW.spec -> 'notify' ->> 'url',
                jsonb_build_object(
                    'type', 'job.' || NEW.state,
                    'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC',
                                         'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                    'data', jsonb_build_object(
                        'id', NEW.id, 'name', NEW.name, 'state', NEW.state,
                        'attempt', NEW.attempt, 'error', NEW.error,
                        'progress', NEW.progress)));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER job_webhook_event AFTER INSERT OR UPDATE OF state ON job
FOR EACH ROW EXECUTE FUNCTION job_webhook_event();
"""


def upgrade() -> None:
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("job_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("job.id", ondelete="CASCADE", name="fk_webhook_delivery_job_id_job"),
                  nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("given_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_delivery"),
    )
    op.create_index("ix_webhook_delivery_job_id", "webhook_delivery", ["job_id", "id"])
    op.create_index("ix_webhook_delivery_due", "webhook_delivery", ["next_attempt_at"],
                    postgresql_where=sa.text("delivered_at IS NULL AND given_up_at IS NULL"))
    op.create_table(
        "webhook_secret",
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_webhook_secret"),
    )
    op.execute(EVENT_FUNCTION)


def downgrade() -> None:
    op.execute("DROP TRIGGER job_webhook_event ON job")
    op.execute("DROP FUNCTION job_webhook_event()")
    op.drop_table("webhook_secret")
    op.drop_index("ix_webhook_delivery_due", table_name="webhook_delivery")
    op.drop_index("ix_webhook_delivery_job_id", table_name="webhook_delivery")
    op.drop_table("webhook_delivery")
