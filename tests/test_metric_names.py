"""`traindock metrics JOB --names ...` with a name the job has no point of: a typo is an
error that lists the names the job has, a metric a running job has not logged yet says so,
and a queued job says it has not started. The API helps with `/metrics/names`. Jobs are
written straight to the database (no worker trains them), read over HTTP by the real CLI."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from core.db import make_engine
from core.repo import jobs as job_repo
from core.repo import metrics as metric_repo
from tests.conftest import load_example
from tests.test_cli import traindock

LOGGED = ["lr", "train_loss"]


@pytest.fixture(scope="module")
def jobs(settings) -> dict[str, str]:
    """A queued job, a running one and a succeeded one; the last two logged `LOGGED`."""
    engine = make_engine(settings)
    ids = {}
    for state in ("queued", "running", "succeeded"):
        with Session(engine) as session, session.begin():
            job = job_repo.create_job(session, name=f"names-{state}",
                                      spec=load_example("digits-mlp"), max_attempts=1,
                                      model_summary={}, total_steps=0)
            job_id = job.id
        ids[state] = str(job_id)
        if state == "queued":
            continue  # never published: no worker takes it
        with Session(engine) as session, session.begin():
            attempt = job_repo.claim_job(session, job_id, "test", 600)
        now = datetime.now(UTC)
        points = [metric_repo.Point(name=name, step=step, value=0.5, epoch=1, wall_time=now)
                  for name in LOGGED for step in (1, 2)]
        with engine.begin() as conn:
            keys = metric_repo.metric_key_ids(conn, LOGGED)
            assert metric_repo.write_points(conn, job_id, attempt, points, keys) == 4
        if state == "succeeded":
            with Session(engine) as session, session.begin():
                assert job_repo.finish_job(session, job_id, attempt, "succeeded")
    engine.dispose()
    return ids


def test_the_api_lists_the_names_a_job_has_logged(client, jobs) -> None:
    for state, names in (("queued", []), ("running", LOGGED), ("succeeded", LOGGED)):
        response = client.get(f"/v1/jobs/{jobs[state]}/metrics/names")
        assert response.status_code == 200, response.text
        assert response.json() == {"names": names}
    assert client.get(f"/v1/jobs/{uuid.uuid4()}/metrics/names").status_code == 404


def test_a_misspelt_name_on_a_finished_job_is_an_error_listing_its_names(api_url, jobs) -> None:
    result = traindock("metrics", jobs["succeeded"], "--names", "val_los", "--url", api_url)
    assert result.returncode == 1, result
    assert "no metric points yet" not in result.stderr
    assert "unknown metric name(s) for this succeeded job: val_los" in result.stderr
    assert "it has lr, train_loss" in result.stderr


def test_the_known_names_are_shown_beside_the_unknown_one(api_url, jobs) -> None:
    result = traindock("metrics", jobs["succeeded"], "--names", "train_loss,typo",
                       "--url", api_url)
    assert result.returncode == 1, result
    assert result.stdout.splitlines()[1].split()[0] == "train_loss", result.stdout
    assert "typo" in result.stderr and "train_loss" not in result.stderr.split(";")[0]


def test_a_running_job_says_not_logged_yet(api_url, jobs) -> None:
    result = traindock("metrics", jobs["running"], "--names", "val_loss", "--url", api_url)
    assert result.returncode == 1, result
    assert "val_loss: not logged yet by this running job; so far it has lr, train_loss" \
        in result.stderr


def test_a_queued_job_says_it_has_not_started(api_url, jobs) -> None:
    result = traindock("metrics", jobs["queued"], "--names", "val_loss", "--url", api_url)
    assert result.returncode == 1, result
    assert "the job is queued and has not started" in result.stderr
    plain = traindock("metrics", jobs["queued"], "--url", api_url)
    assert plain.returncode == 0 and "queued and has not started" in plain.stderr, plain


def test_csv_of_an_unknown_name_writes_nothing_and_fails(api_url, jobs) -> None:
    result = traindock("metrics", jobs["succeeded"], "--csv", "--names", "typo",
                       "--url", api_url)
    assert result.returncode == 1, result
    assert result.stdout == "" and "unknown metric name(s)" in result.stderr


def test_known_names_still_exit_0(api_url, jobs) -> None:
    result = traindock("metrics", jobs["succeeded"], "--names", "lr", "--url", api_url)
    assert result.returncode == 0, result
    assert result.stderr == "" and result.stdout.splitlines()[1].split()[0] == "lr"
