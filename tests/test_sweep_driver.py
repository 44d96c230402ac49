"""core/sweeps/driver.py on a database of its own, with no worker: many callers advancing
one sweep at once ask each configuration once; finished trials free their places for new
ones until the budget is spent; the sweep ends succeeded with the best trial, or failed
when no trial produced the objective; and the reaper's pass advances what no worker did."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import delete, select, update

from core.db import Database
from core.settings import Settings
from core.sweeps.check import check_sweep
from core.sweeps.driver import advance, advance_active
from core.sweeps.spec import SweepSpec
from core.tables import Job, Sweep
from tests.conftest import load_example


@pytest.fixture
def db(fresh_database: str):
    database = Database.connect(Settings(database_url=fresh_database), pool_size=10)
    yield database
    database.engine.dispose()


def _create(db: Database, **fields) -> tuple[uuid.UUID, SweepSpec]:
    base = load_example("digits-mlp") | {"training": {"epochs": 1, "max_steps": 2}}
    checked = check_sweep(SweepSpec.model_validate({"base": base, **fields}),
                          Settings(database_url="postgresql://unused@127.0.0.1/x"))
    with db.transaction() as session:
        sweep = Sweep(id=uuid.uuid4(), name="s", owner="o", trials=checked.trials,
                      spec=checked.spec.model_dump(mode="json"))
        session.add(sweep)
    return sweep.id, checked.spec


def _jobs(db: Database, sweep_id: uuid.UUID) -> list[Job]:
    with db.read() as session:
        return list(session.scalars(select(Job).where(Job.sweep_id == sweep_id)
                                    .order_by(Job.trial_number, Job.trial_repeat)))


def _finish(db: Database, job_ids: list[uuid.UUID], values: dict[uuid.UUID, float | None]
            ) -> None:
    with db.transaction() as session:
        for job_id in job_ids:
            value = values.get(job_id)
            summary = {"best": {"val_loss": {"value": value, "step": 1, "epoch": 1}}} \
                if value is not None else {}
            session.execute(update(Job).where(Job.id == job_id).values(
                state="succeeded" if value is not None else "cancelled", summary=summary))


def test_callers_at_once_ask_each_configuration_once_until_the_budget_is_spent(db):
    sweep_id, spec = _create(db, method="tpe", budget={"trials": 5}, parallelism=2, repeats=2,
                             parameters={"optimizer.lr": {"low": 1e-4, "high": 0.1,
                                                          "log": True}})
    settings = Settings(database_url=str(db.engine.url))
    published: list[str] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            advance(db, sweep_id, settings, published.append)
        except BaseException as error:  # a caller that lost a race on the unique constraint
            errors.append(error)

    callers = [threading.Thread(target=call) for _ in range(8)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert errors == []  # they took turns on the sweep's row lock
    jobs = _jobs(db, sweep_id)
    assert [(j.trial_number, j.trial_repeat) for j in jobs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert sorted(published) == sorted(str(j.id) for j in jobs)  # each published once
    assert jobs[0].trial_params == jobs[1].trial_params != jobs[2].trial_params
    assert [j.spec["training"]["seed"] for j in jobs[:2]] == [0, 1]
    assert jobs[0].spec["optimizer"]["lr"] == jobs[0].trial_params["optimizer.lr"]

    # trial 0 ends: one new configuration; trial 1 ends: another, and so on up to 5
    value = 1.0
    while True:
        open_jobs = [j for j in _jobs(db, sweep_id) if j.state == "queued"]
        if not open_jobs:
            break
        first = min(j.trial_number for j in open_jobs)
        done = [j.id for j in open_jobs if j.trial_number == first]
        _finish(db, done, dict.fromkeys(done, value))
        value -= 0.1
        assert advance(db, sweep_id, settings, lambda _: False) in ("running", "succeeded")
    jobs = _jobs(db, sweep_id)
    assert sorted({j.trial_number for j in jobs}) == [0, 1, 2, 3, 4]
    assert len(jobs) == 10
    with db.read() as session:
        sweep = session.get(Sweep, sweep_id)
    assert sweep.state == "succeeded" and sweep.finished_at is not None
    assert sweep.best["trial_number"] == 4 and sweep.best["value"] == pytest.approx(0.6)


def test_a_sweep_whose_trials_all_end_without_a_value_fails_saying_so_and_the_reaper_ends_it(db):
    sweep_id, _ = _create(db, method="grid", parallelism=2,
                          parameters={"optimizer.lr": {"values": [0.1, 0.01]}})
    settings = Settings(database_url=str(db.engine.url))
    assert advance(db, sweep_id, settings, lambda _: False) == "running"
    jobs = _jobs(db, sweep_id)
    _finish(db, [j.id for j in jobs], {})  # cancelled while queued: no worker saw them end
    assert advance_active(db, settings, lambda _: False) == 1  # the reaper's pass
    with db.read() as session:
        sweep = session.get(Sweep, sweep_id)
    assert sweep.state == "failed" and "no trial produced val_loss" in sweep.error
    assert advance_active(db, settings, lambda _: False) == 0  # ended: nothing left to advance


def test_a_deleted_trial_job_is_not_asked_again(db):
    sweep_id, _ = _create(db, method="grid", parallelism=1,
                          parameters={"optimizer.lr": {"values": [0.1, 0.01, 0.001]}})
    settings = Settings(database_url=str(db.engine.url))
    advance(db, sweep_id, settings, lambda _: False)
    (first,) = _jobs(db, sweep_id)
    _finish(db, [first.id], {})
    with db.transaction() as session:  # DELETE /v1/jobs/{id} of the ended trial
        session.execute(delete(Job).where(Job.id == first.id))
    advance(db, sweep_id, settings, lambda _: False)
    assert [(j.trial_number, j.trial_params) for j in _jobs(db, sweep_id)] == [
        (1, {"optimizer.lr": 0.01})]


def test_a_sweep_waits_at_the_owners_active_jobs_limit(db):
    sweep_id, _ = _create(db, method="grid", parallelism=3, repeats=2,
                          parameters={"optimizer.lr": {"values": [0.1, 0.01, 0.001]}})
    settings = Settings(database_url=str(db.engine.url), max_active_jobs_per_owner=3)
    advance(db, sweep_id, settings, lambda _: False)
    assert len(_jobs(db, sweep_id)) == 2  # a second trial's two jobs would make four
    _finish(db, [j.id for j in _jobs(db, sweep_id)], {})
    advance(db, sweep_id, settings, lambda _: False)
    assert [j.trial_number for j in _jobs(db, sweep_id)] == [0, 0, 1, 1]
