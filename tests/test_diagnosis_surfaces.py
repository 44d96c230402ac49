"""Where a job's diagnosis is shown: `GET /v1/jobs/{id}` (and only a count in the list), the
events stream, `traindock show` and `watch`, and the terminal webhook events. The jobs are
written straight into the database with the diagnosis in their summary, as the training
process stores it (docs/api.md, Diagnosis), and read back through the real API, the real
terminal client and the real outbox trigger; none is queued, so no worker trains them."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from core.db import Database
from core.migrate import downgrade, upgrade
from core.repo import jobs as job_repo
from core.settings import Settings
from core.tables import Job
from tests.conftest import ROOT, load_example
from tests.test_webhooks import receiver  # noqa: F401 - a fixture
from worker.webhooks import deliver_due

EVIDENCE = ("first/last gradient-norm ratio 3.1e-07 (layers.0 1.2e-08, layers.14 0.039) at "
            "steps 100-400 while val_loss stayed at 2.30 (ln 10 = 2.30)")
VANISHING = {
    "name": "vanishing_gradients", "severity": "warning", "since_step": 120,
    "evidence": EVIDENCE, "data": {"ratio": 3.1e-07, "first": 1.2e-08, "last": 0.039},
    "actions": [
        {"field": "model.init", "value": {"type": "he_normal"},
         "why": "He initialisation keeps ReLU activations' variance through depth"},
        {"field": "optimizer.lr", "value": 0.001, "why": "a smaller step while it recovers"},
    ],
}
DIVERGENCE = {
    "name": "divergence", "severity": "error", "since_step": 410,
    "evidence": "train_loss 3.2e+21 at step 410, 1e+20 times its best (2.1 at step 80)",
    "data": {"loss": 3.2e21, "best": 2.1}, "actions": [],
}


def diagnosis(*findings: dict, final: bool = False, step: int = 400) -> dict[str, Any]:
    return {"final": final, "step": step, "findings": [copy.deepcopy(f) for f in findings]}


@pytest.fixture(scope="module")
def db(settings: Settings) -> Iterator[Database]:
    database = Database.connect(settings, pool_size=1)
    yield database
    database.engine.dispose()


def put_job(db: Database, state: str, summary: dict[str, Any], spec: dict | None = None,
            name: str = "diagnosed", attempt: int = 1) -> str:
    """A job in `state` with `summary`, as a worker would have left it. A running one holds a
    lease for an hour, so no reaper takes it back meanwhile. (Attempt 0: no log is asked
    for, as the dashboard's logs panel would of a begun attempt.)"""
    now = datetime.now(UTC)
    with db.transaction() as session:
        job = job_repo.create_job(session, name=name, spec=spec or load_example("digits-mlp"),
                                  max_attempts=1, model_summary={}, total_steps=1000)
        values: dict[str, Any] = {
            "state": state, "attempt": attempt, "summary": summary, "started_at": now,
            "progress": {"step": 400, "epoch": 2, "epochs": 5, "total_steps": 1000}}
        if state == "running":
            values |= {"lease_owner": "test@diagnosis",
                       "lease_expires_at": now + timedelta(hours=1)}
        else:
            values |= {"finished_at": now}
        session.execute(update(Job).where(Job.id == job.id).values(**values))
        return str(job.id)


def set_job(db: Database, job_id: str, **values: Any) -> None:
    with db.transaction() as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(**values))


# ---- the API ----------------------------------------------------------------------------

def test_the_job_carries_its_diagnosis_and_the_list_only_a_count(client, db):
    stored = diagnosis(VANISHING, DIVERGENCE)
    job_id = put_job(db, "running", {"latest": {"train_loss": 2.3}, "diagnosis": stored})

    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["diagnosis"] == stored
    # Served apart from the summary, once: not twice in every answer.
    assert job["summary"] == {"latest": {"train_loss": 2.3}}

    listed = client.get("/v1/jobs", params={"id_prefix": job_id}).json()["items"]
    [item] = [i for i in listed if i["id"] == job_id]
    assert item["findings"] == 2
    assert "diagnosis" not in item and "diagnosis" not in item["summary"]


def test_a_job_without_a_diagnosis_has_the_empty_one(client, db):
    job_id = put_job(db, "succeeded", {"latest": {"train_loss": 0.1}})
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["diagnosis"] == {"final": False, "step": 0, "findings": []}
    listed = client.get("/v1/jobs", params={"id_prefix": job_id}).json()["items"]
    assert [i["findings"] for i in listed] == [0]


def test_a_finding_that_breaks_the_contract_is_left_out_and_the_rest_served(client, db):
    broken = VANISHING | {"severity": "catastrophic"}
    no_evidence = {k: v for k, v in DIVERGENCE.items() if k != "evidence"}
    # a list in `data` costs that entry only, not the finding
    listed = DIVERGENCE | {"data": DIVERGENCE["data"] | {"per_layer": [1.0, 2.0]}}
    stored = diagnosis(broken, listed, no_evidence, final=True)
    job_id = put_job(db, "failed", {"diagnosis": stored})
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    assert response.json()["diagnosis"] == diagnosis(DIVERGENCE, final=True)
    # A diagnosis that is not even an object is the empty one.
    set_job(db, job_id, summary={"diagnosis": ["not", "an", "object"]})
    assert client.get(f"/v1/jobs/{job_id}").json()["diagnosis"]["findings"] == []


def test_the_openapi_document_describes_findings_and_actions(client):
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    job = schemas["JobOut"]["properties"]["diagnosis"]
    assert job["$ref"] == "#/components/schemas/DiagnosisOut"
    finding = schemas["FindingOut"]
    assert set(finding["required"]) == {"name", "severity", "since_step", "evidence"}
    assert finding["properties"]["severity"]["enum"] == ["error", "warning", "info"]
    assert set(schemas["ActionOut"]["required"]) == {"field", "value", "why"}
    assert "findings" in schemas["JobListItem"]["required"]
    assert "diagnosis" not in schemas["JobListItem"]["properties"]


def read_events(lines: Iterator[str], kind: str, timeout: float = 15) -> dict:
    """The data of the next event of `kind` on a server-sent event stream."""
    deadline = time.monotonic() + timeout
    current = None
    for line in lines:
        if time.monotonic() > deadline:
            break
        if line.startswith("event: "):
            current = line[len("event: "):]
        elif line.startswith("data: ") and current == kind:
            return json.loads(line[len("data: "):])
    raise TimeoutError(f"no `{kind}` event")


def test_the_events_stream_sends_the_diagnosis_when_it_changes(api_url, db):
    job_id = put_job(db, "running", {"diagnosis": diagnosis(VANISHING, step=200)})
    try:
        with httpx.stream("GET", f"{api_url}/v1/jobs/{job_id}/events", params={"ping_s": 1},
                          timeout=20) as response:
            lines = response.iter_lines()
            assert read_events(lines, "diagnosis") == diagnosis(VANISHING, step=200)
            set_job(db, job_id, summary={"diagnosis": diagnosis(VANISHING, DIVERGENCE,
                                                                step=410)})
            assert read_events(lines, "diagnosis")["findings"] == [VANISHING, DIVERGENCE]
            set_job(db, job_id, state="failed", finished_at=datetime.now(UTC),
                    summary={"diagnosis": diagnosis(DIVERGENCE, final=True, step=410)})
            assert read_events(lines, "diagnosis") == diagnosis(DIVERGENCE, final=True,
                                                                step=410)
            assert read_events(lines, "end") == {"state": "failed"}
    finally:
        set_job(db, job_id, state="cancelled", lease_owner=None, lease_expires_at=None)


# ---- the terminal client ----------------------------------------------------------------

def traindock(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


ENV = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")} | {
    "PYTHONPATH": str(ROOT)}

ACTION_LINES = [
    '    set model.init to {"type": "he_normal"}: He initialisation keeps ReLU activations\' '
    "variance through depth",
    "    set optimizer.lr to 0.001: a smaller step while it recovers",
]


def test_show_prints_the_findings_above_the_json(api_url, db):
    job_id = put_job(db, "failed", {"diagnosis": diagnosis(VANISHING, DIVERGENCE, final=True,
                                                           step=410)})
    result = subprocess.run(traindock("show", job_id[:8], "--url", api_url), cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["diagnosis"]["findings"][1]["name"] == "divergence"
    assert result.stderr.splitlines() == [
        "diagnosis  2 findings at step 410 (final):",
        "  warning  vanishing_gradients  since step 120",
        f"    {EVIDENCE}",
        *ACTION_LINES,
        "  error    divergence  since step 410",
        f"    {DIVERGENCE['evidence']}",
        "",
    ]


def test_watch_prints_the_findings_as_they_change_and_first_in_the_summary(api_url, db):
    job_id = put_job(db, "running", {"diagnosis": diagnosis(step=100)})
    proc = subprocess.Popen(traindock("watch", job_id, "--url", api_url), cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)  # a poll or two with nothing found: nothing is said
        set_job(db, job_id, summary={"diagnosis": diagnosis(VANISHING, step=200)})
        time.sleep(2.5)
        # new evidence for the same finding is not printed again
        set_job(db, job_id, summary={"diagnosis": diagnosis(
            VANISHING | {"evidence": "ratio 2e-07 now"}, step=300)})
        time.sleep(2.5)
        set_job(db, job_id, state="failed", finished_at=datetime.now(UTC), lease_owner=None,
                lease_expires_at=None, error="diverged at step 410",
                summary={"diagnosis": diagnosis(VANISHING, DIVERGENCE, final=True, step=410)})
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1  # the job failed
    progress = [line for line in err.splitlines() if line.startswith("running")]
    assert progress, err
    assert "diagnosis  1 finding at step 200 (so far):" in err
    assert err.count("vanishing_gradients") == 1 and "ratio 2e-07 now" not in err
    assert err.index("diagnosis  1 finding") > err.index(progress[0])  # above the next line
    assert "divergence" not in err  # the final findings are the summary's
    assert out.splitlines()[:3] == ["diagnosis  2 findings at step 410 (final):",
                                    "  warning  vanishing_gradients  since step 120",
                                    f"    {EVIDENCE}"]
    assert f"job       {job_id}  diagnosed" in out
    assert out.index("divergence") < out.index("job       ")


def test_watch_of_a_run_that_ended_with_nothing_found_says_so(api_url, db):
    job_id = put_job(db, "succeeded", {"diagnosis": diagnosis(final=True, step=1000)})
    result = subprocess.run(traindock("watch", job_id, "--url", api_url), cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "diagnosis  nothing found (the run's steps through 1000 were read)")


# ---- webhooks ---------------------------------------------------------------------------

def test_terminal_webhook_events_carry_the_final_diagnosis(fresh_database, receiver):  # noqa: F811
    hook = receiver()
    settings = Settings(database_url=fresh_database, webhook_allow_private=True)
    db = Database.connect(settings, pool_size=1)
    spec = load_example("digits-mlp") | {"notify": {"url": hook.url}}
    final = diagnosis(VANISHING, DIVERGENCE, final=True, step=410)
    try:
        failed = put_job(db, "running", {"diagnosis": diagnosis(VANISHING, step=200)}, spec)
        set_job(db, failed, summary={"diagnosis": final})  # the training process's last flush
        set_job(db, failed, state="failed", error="diverged at step 410")  # then the worker's
        plain = put_job(db, "running", {}, spec)
        set_job(db, plain, state="cancelled")
        while deliver_due(db, settings):
            pass
        bodies = {(b["data"]["id"], b["type"]): b["data"]
                  for b in (json.loads(body) for _, body in hook.seen)}
        assert bodies[(failed, "job.failed")]["diagnosis"] == final
        assert bodies[(failed, "job.failed")]["error"] == "diverged at step 410"
        assert bodies[(plain, "job.cancelled")]["diagnosis"] == {
            "final": False, "step": 0, "findings": []}
        # Only the terminal events: the others stay as small as they were.
        assert "diagnosis" not in bodies[(failed, "job.running")]
        assert "diagnosis" not in bodies[(failed, "job.queued")]
    finally:
        db.engine.dispose()


def _ended_job_sql(database_url: str, spec: dict, summary: dict) -> str:
    """A job queued then marked succeeded with `summary`, in plain SQL: the schema is an older
    revision's here, which the ORM's table (of the newest) does not match."""
    import psycopg

    job_id = str(uuid.uuid4())
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO job (id, name, spec, max_attempts, progress, summary, "
                     "model_summary) VALUES (%s, 'diagnosed', %s, 1, '{}', '{}', '{}')",
                     (job_id, json.dumps(spec)))
        conn.execute("UPDATE job SET state = 'succeeded', summary = %s, finished_at = now() "
                     "WHERE id = %s", (json.dumps(summary), job_id))
    return job_id


def _payloads(database_url: str, job_id: str) -> list[dict]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute(
            "SELECT payload FROM webhook_delivery WHERE job_id = %s", (job_id,))]


def test_the_webhook_diagnosis_migration_reverts(fresh_database):
    url = Settings(database_url=fresh_database).sqlalchemy_url
    downgrade(url, "0008_key_expiry")  # the revision before the trigger's change
    spec = load_example("digits-mlp") | {"notify": {"url": "http://127.0.0.1:9/h",
                                                    "events": ["succeeded"]}}
    summary = {"diagnosis": diagnosis(VANISHING, final=True)}
    before = _ended_job_sql(fresh_database, spec, summary)
    upgrade(url)
    after = _ended_job_sql(fresh_database, spec, summary)
    [old], [new] = _payloads(fresh_database, before), _payloads(fresh_database, after)
    assert "diagnosis" not in old["data"]
    assert new["data"]["diagnosis"]["findings"] == [VANISHING]
