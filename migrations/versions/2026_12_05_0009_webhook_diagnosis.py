"""Webhooks: a job's terminal events (succeeded, failed, cancelled) carry its diagnosis.

The payload is built by the outbox trigger of 0006, in the transaction that changes the
state, so the diagnosis is read there too: the training process has stored its final
diagnosis in `summary.diagnosis` before it exits, and the worker marks the job ended after.
The diagnosis goes in as stored, or as the API's default (no findings) when there is none.
The other events are unchanged.

Revision ID: 0009_webhook_diagnosis
Revises: 0008_key_expiry
Create Date: 2026-12-05
"""

from alembic import op

revision = "0009_webhook_diagnosis"
down_revision = "0008_key_expiry"
branch_labels = None
depends_on = None

# The body of 0006's function, with `data.diagnosis` added on a final state.
WITH_DIAGNOSIS = """
CREATE OR REPLACE FUNCTION job_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event_data jsonb;
BEGIN
    IF jsonb_typeof(NEW.spec -> 'notify') = 'object'
       AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM NEW.state)
       AND (jsonb_typeof(NEW.spec -> 'notify' -> 'events') IS DISTINCT FROM 'array'
            OR (NEW.spec -> 'notify' -> 'events') ? NEW.state) THEN
        event_data := jsonb_build_object(
            'id', NEW.id, 'name', NEW.name, 'state', NEW.state,
            'attempt', NEW.attempt, 'error', NEW.error,
            'progress', NEW.progress);
        IF NEW.state IN ('succeeded', 'failed', 'cancelled') THEN
            event_data := event_data || jsonb_build_object('diagnosis', CASE
                WHEN jsonb_typeof(NEW.summary -> 'diagnosis') = 'object'
                THEN NEW.summary -> 'diagnosis'
                ELSE '{"final": false, "step": 0, "findings": []}'::jsonb END);
        END IF;
        INSERT INTO webhook_delivery (job_id, event, url, payload)
        VALUES (NEW.id, NEW.state, NEW.spec -> 'notify' ->> 'url',
                jsonb_build_object(
                    'type', 'job.' || NEW.state,
                    'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC',
                                         'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                    'data', event_data));
    END IF;
    RETURN NULL;
END
$$;
"""

# 0006's function as it was.
WITHOUT_DIAGNOSIS = """
CREATE OR REPLACE FUNCTION job_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""


def upgrade() -> None:
    op.execute(WITH_DIAGNOSIS)


def downgrade() -> None:
    op.execute(WITHOUT_DIAGNOSIS)
