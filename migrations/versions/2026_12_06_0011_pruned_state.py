"""The job state `pruned`: a sweep's pruner stopped the trial early (core/sweeps/prune.py).

It is final, as succeeded, failed and cancelled are: the job check constraint takes it, and
the webhook trigger of 0006/0009 sends it as its own event, `job.pruned`, with the job's final
diagnosis as the other final events carry (docs/integration.md). A sweep is never pruned: its
constraint is unchanged.

Downgrading turns pruned jobs into failed ones (their `error` says they were pruned), since
the old constraint has no place for them.

Revision ID: 0011_pruned_state
Revises: 0010_sweeps
Create Date: 2026-12-06
"""

from alembic import op

revision = "0011_pruned_state"
down_revision = "0010_sweeps"
branch_labels = None
depends_on = None

_EVENT_FUNCTION = """
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
        IF NEW.state IN (%(final)s) THEN
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

WITH_PRUNED = _EVENT_FUNCTION % {"final": "'succeeded', 'failed', 'cancelled', 'pruned'"}
WITHOUT_PRUNED = _EVENT_FUNCTION % {"final": "'succeeded', 'failed', 'cancelled'"}


def upgrade() -> None:
    op.drop_constraint("ck_job_state", "job", type_="check")
    op.create_check_constraint(
        op.f("ck_job_state"), "job",
        "state IN ('queued','running','succeeded','failed','cancelled','pruned')")
    op.execute(WITH_PRUNED)


def downgrade() -> None:
    op.execute(WITHOUT_PRUNED)
    op.execute("UPDATE job SET state = 'failed' WHERE state = 'pruned'")
    op.drop_constraint("ck_job_state", "job", type_="check")
    op.create_check_constraint(
        op.f("ck_job_state"), "job", "state IN ('queued','running','succeeded','failed','cancelled')")
