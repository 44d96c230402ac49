"""Sweeps end to end over real HTTP, with real Optuna, PostgreSQL and a real worker: a grid
runs every point exactly once, repeats aggregate as the jobs' own summaries say, the best
configuration promotes to a job of its own, a cancelled sweep stops its trials and deletes
with them, and bad sweeps are 422s naming the field before any trial starts."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid

import httpx
import psycopg
import pytest

from tests.conftest import ROOT, load_example, wait_for_state


def tiny_base(**training) -> dict:
    spec = load_example("digits-mlp")
    spec["training"] = {"epochs": 1, "max_steps": 3, "batch_size": 64, "seed": 7,
                        "checkpoint_every_epochs": 0, **training}
    return spec


def wait_for_sweep(client: httpx.Client, sweep_id: str, states: set[str],
                   timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    sweep: dict = {}
    while time.monotonic() < deadline:
        response = client.get(f"/v1/sweeps/{sweep_id}")
        if response.status_code == 200:
            sweep = response.json()
            if sweep["state"] in states:
                return sweep
        time.sleep(0.3)
    raise TimeoutError(f"sweep {sweep_id} still {sweep.get('state')} after {timeout}s: {sweep}")


def sweep_jobs(database_url: str, sweep_id: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT id, trial_number, trial_repeat, trial_params, attempt, state FROM job "
            "WHERE sweep_id = %s ORDER BY trial_number, trial_repeat", (sweep_id,)).fetchall()


def cli(api_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")}
    return subprocess.run([sys.executable, "-m", "cli.main", *args, "--url", api_url],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_grid_runs_every_point_once_and_repeats_aggregate(client, api_url, worker,
                                                             database_url, tmp_path):
    lrs = [0.003, 0.3]  # two points, two seeds each: four jobs on the one test worker
    body = {"name": f"grid-{uuid.uuid4().hex[:6]}", "base": tiny_base(), "method": "grid",
            "parameters": {"optimizer.lr": {"values": lrs}}, "repeats": 2, "parallelism": 1,
            "objective": {"metric": "val_loss", "at": "final"}}
    (tmp_path / "sweep.json").write_text(json.dumps(body))
    watched = cli(api_url, "sweep", str(tmp_path / "sweep.json"), "--watch")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    sweep_id = watched.stdout.splitlines()[0]
    table = watched.stdout.strip().split("\n\n")[-1]  # the last drawing, the best starred
    assert "succeeded, 2/2 trials ended" in table, watched.stdout
    assert sum(line.startswith("*") for line in table.splitlines()) == 1, table
    sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
    assert sweep["state"] == "succeeded" and sweep["trials_planned"] == 2, sweep

    rows = sweep_jobs(database_url, sweep_id)
    assert sorted((n, r) for _, n, r, *_ in rows) == [(n, r) for n in range(2) for r in range(2)]
    assert sorted(p["optimizer.lr"] for _, _, r, p, *_ in rows if r == 0) == lrs
    assert all(attempt == 1 and state == "succeeded" for *_, attempt, state in rows), rows

    for trial in sweep["trials"]:
        values, seeds = [], []
        for job in trial["jobs"]:
            full = client.get(f"/v1/jobs/{job['id']}").json()
            assert (full["sweep_id"], full["trial_number"]) == (sweep_id, trial["number"])
            assert full["spec"]["optimizer"]["lr"] == trial["params"]["optimizer.lr"]
            values.append(full["summary"]["latest"]["val_loss"])  # at: final
            seeds.append(full["spec"]["training"]["seed"])
        assert seeds == [7, 8]
        assert trial["values"] == pytest.approx(values)
        assert trial["value"] == pytest.approx(statistics.fmean(values))
        assert trial["std"] == pytest.approx(statistics.stdev(values))
    best = min(sweep["trials"], key=lambda t: t["value"])
    assert sweep["best"]["trial_number"] == best["number"]
    assert sweep["best_spec"]["optimizer"]["lr"] == best["params"]["optimizer.lr"]
    assert sweep["importances"] is None  # one parameter
    assert sweep_id in {s["id"] for s in client.get("/v1/sweeps").json()["items"]}

    listed = cli(api_url, "sweeps")
    assert sweep_id[:8] in listed.stdout and body["name"] in listed.stdout, listed.stdout
    best_out = cli(api_url, "best", body["name"], "-o", str(tmp_path / "best.json"))
    assert best_out.returncode == 0, best_out.stderr
    assert json.loads((tmp_path / "best.json").read_text()) == sweep["best_spec"]
    assert f"optimizer.lr = {best['params']['optimizer.lr']}" in best_out.stderr

    promoted = client.post(f"/v1/sweeps/{sweep_id}/promote", json={"epochs": 2})
    assert promoted.status_code == 201, promoted.text
    job = promoted.json()
    assert job["spec"]["optimizer"]["lr"] == best["params"]["optimizer.lr"]
    assert job["spec"]["training"]["epochs"] == 2 and job["spec"]["training"]["seed"] == 7
    client.post(f"/v1/jobs/{job['id']}/cancel")


def test_cancel_stops_the_trials_and_delete_takes_their_jobs(client, database_url):
    body = {"base": tiny_base(), "method": "random", "budget": {"trials": 50},
            "parallelism": 2, "parameters": {"optimizer.lr": {"low": 1e-4, "high": 0.1,
                                                                "log": True}}}
    created = client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    assert client.delete(f"/v1/sweeps/{sweep_id}").status_code == 409  # not ended
    cancelled = client.post(f"/v1/sweeps/{sweep_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
    assert client.post(f"/v1/sweeps/{sweep_id}/cancel").status_code == 409
    rows = sweep_jobs(database_url, sweep_id)
    assert len(rows) == 2  # no worker here: parallelism 2, nothing more asked
    for job_id, *_ in rows:
        wait_for_state(client, str(job_id), {"cancelled"}, timeout=30)
    assert client.delete(f"/v1/sweeps/{sweep_id}").status_code == 204
    assert client.get(f"/v1/sweeps/{sweep_id}").status_code == 404
    assert client.get(f"/v1/jobs/{rows[0][0]}").status_code == 404
    assert sweep_jobs(database_url, sweep_id) == []


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"parameters": {"model.layers[9].p": {"values": [0.1]}}},
     'parameters["model.layers[9].p"]', "has 5 items"),
    ({"parameters": {"model.layers[3].p": {"values": [0.1, 1.5]}}},
     'parameters["model.layers[3].p"]', "1.5 is refused"),
    ({"parameters": {"optimizer.lrr": {"values": [0.1]}}},
     'parameters["optimizer.lrr"]', "no field 'lrr'"),
    ({"parameters": {"optimizer": {"choices": [{"type": "sgd", "lr": 0.1}, {"type": "nope"}]}}},
     'parameters["optimizer"]', "'nope'"),
    ({"method": "random", "parameters": {"training.batch_size": {"low": 0, "high": 64,
                                                                  "type": "int"}},
      "budget": {"trials": 4}}, 'parameters["training.batch_size"]', "batch_size=0"),
    ({"parameters": {"optimizer.lr": {"values": []}}}, 'parameters["optimizer.lr"].values',
     "at least 1"),
    ({"parameters": {"optimizer.lr": {"values": [0.1], "low": 0.1, "high": 1.0}}},
     'parameters["optimizer.lr"]', "exactly one of"),
    ({"parameters": {}}, "parameters", "at least one spec path"),
    ({"parameters": {"optimizer.lr": {"low": 0.001, "high": 0.1}}},
     'parameters["optimizer.lr"]', "a grid needs the points"),
    ({"method": "tpe", "parameters": {"optimizer.lr": {"low": 0.001, "high": 0.1}}},
     "budget.trials", "needs a number of trials"),
    ({"method": "tpe", "budget": {"trials": 600}, "repeats": 2,
      "parameters": {"optimizer.lr": {"low": 0.001, "high": 0.1}}},
     "budget.trials", "TRAINDOCK_MAX_SWEEP_JOBS"),
    ({"objective": {"metric": "val_loss", "mode": "sideways"}}, "objective.mode", "'min'"),
])
def test_a_bad_sweep_is_a_422_naming_the_field_and_starts_nothing(client, database_url, change,
                                                                  field, words):
    body = {"base": tiny_base(), "method": "grid",
            "parameters": {"optimizer.lr": {"values": [0.01]}}, **change}
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT count(*) FROM job").fetchone()[0]
    response = client.post("/v1/sweeps", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["field"] == field and words in d["message"] for d in detail), detail
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM job").fetchone()[0] == before
