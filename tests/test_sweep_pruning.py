"""Pruning end to end over real HTTP, with real Optuna, PostgreSQL and a real worker: a random
sweep with a median pruner stops the trial whose learning rate is hopeless at an evaluation,
keeps what it wrote, says why (over the API and on its dashboard page, in Chromium), and goes
on to its next trial and its end; a pruner the objective cannot feed is a 422 naming
`pruner`. (Browser and page fixtures: tests/test_dashboard.py.)"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.test_dashboard import browser, expect, page  # noqa: F401 - fixtures
from tests.test_sweeps import sweep_jobs, tiny_base, wait_for_sweep

HOPELESS = 1e-7


def test_a_hopeless_trial_is_pruned_keeps_its_curve_and_the_sweep_goes_on(
        client, worker, database_url, page):  # noqa: F811
    # 192 samples: 3 steps an epoch, evaluated and checkpointed at each epoch's end.
    base = tiny_base(epochs=4, max_steps=12, checkpoint_every_epochs=1)
    base["dataset"]["n_train"] = 192
    # Seed 10 picks 0.003, then the hopeless rate, then 0.01 (RandomSampler, seeded per
    # trial): the hopeless trial has a completed one to be compared with, and a trial follows.
    body = {"name": f"prune-{uuid.uuid4().hex[:6]}", "base": base, "method": "random",
            "seed": 10, "budget": {"trials": 3}, "parallelism": 1,
            "parameters": {"optimizer.lr": {"values": [0.003, 0.01, HOPELESS]}},
            "objective": {"metric": "val_loss"},
            "pruner": {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 6}}
    created = client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    assert created.json()["spec"]["pruner"]["type"] == "median"
    sweep = wait_for_sweep(client, sweep_id, {"succeeded", "failed", "cancelled"}, timeout=240)
    assert sweep["state"] == "succeeded", sweep

    trials = {t["params"]["optimizer.lr"]: t for t in sweep["trials"]}
    assert [t["params"]["optimizer.lr"] for t in sweep["trials"]] == [0.003, HOPELESS, 0.01]
    assert trials[0.003]["state"] == trials[0.01]["state"] == "succeeded", sweep["trials"]
    pruned_trial = trials[HOPELESS]
    assert pruned_trial["state"] == "pruned" and pruned_trial["value"] is None, pruned_trial
    stop = pruned_trial["pruned"]
    assert stop["step"] == 6 and stop["metric"] == "val_loss", stop  # the first past warm-up
    assert sweep["best"]["trial_number"] != pruned_trial["number"]

    job_id = pruned_trial["jobs"][0]["id"]
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "pruned" and job["finished_at"] is not None, job
    assert job["error"].startswith("pruned at step 6: val_loss "), job["error"]
    assert "worse than the median" in job["error"]
    assert job["summary"]["pruned"]["reason"] == job["error"]
    assert job["diagnosis"]["final"] is True
    assert job["progress"]["step"] == 6
    assert pruned_trial["jobs"][0]["value"] == pytest.approx(job["summary"]["latest"]["val_loss"])

    series = client.get(f"/v1/jobs/{job_id}/metrics",
                        params={"names": "val_loss,train_loss_step"}).json()["series"]
    assert series["val_loss"]["step"] == [3, 6]
    assert series["val_loss"]["value"][-1] == pytest.approx(stop["value"])
    assert series["train_loss_step"]["step"][-1] == 6  # the curve up to where it stopped
    # The checkpoint of its first epoch is kept; its second epoch's was never written.
    checkpoints = client.get(f"/v1/jobs/{job_id}/checkpoints").json()
    assert [c["step"] for c in checkpoints] == [3], checkpoints

    listed = client.get("/v1/jobs", params={"state": "pruned"}).json()
    assert job_id in {j["id"] for j in listed["items"]}, listed
    rows = sweep_jobs(database_url, sweep_id)
    assert [(n, attempt, state) for _, n, _, _, attempt, state in rows] == [
        (0, 1, "succeeded"), (1, 1, "pruned"), (2, 1, "succeeded")]

    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#job-state .state-pruned")).to_have_text("pruned")
    note = page.locator("#job-error")
    expect(note).to_have_text(job["error"])
    expect(note).to_have_class("alert pruned-note")
    page.goto(f"/sweeps/{sweep_id}")
    expect(page.locator("#sweep-facts")).to_contain_text("3 of 3 ended, 1 pruned")
    expect(page.locator("#sweep-facts")).to_contain_text("pruner median")
    page.goto("/?state=pruned")
    expect(page.locator(f'tr[data-job-id="{job_id}"] .state-pruned')).to_have_text("pruned")


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"objective": {"metric": "test_accuracy"}, "pruner": {"type": "median"}},
     "pruner", "measured once, at the run's end"),
    ({"pruner": {"type": "median"}}, "pruner", "evaluated only at the run's end"),
    ({"base": tiny_base(epochs=2, max_steps=6, eval_every_steps=2),
      "pruner": {"type": "median", "reduction_factor": 3}},
     "pruner", "reduction_factor is not a knob of the median pruner"),
    ({"pruner": {"type": "asha"}}, "pruner.type", "'median'"),
    ({"pruner": {"type": "hyperband", "reduction_factor": 1}}, "pruner.reduction_factor",
     "greater than or equal to 2"),
])
def test_a_pruner_the_objective_cannot_feed_is_a_422_naming_it(client, database_url, change,
                                                               field, words):
    body = {"base": tiny_base(), "method": "grid",
            "parameters": {"optimizer.lr": {"values": [0.01]}}, **change}
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT count(*) FROM sweep").fetchone()[0]
    response = client.post("/v1/sweeps", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["field"] == field and words in d["message"] for d in detail), detail
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM sweep").fetchone()[0] == before
