"""A job travels end to end: HTTP -> PostgreSQL -> Redis -> Celery worker -> training child ->
metrics and checkpoints -> HTTP. Everything is real."""

from __future__ import annotations

import hashlib
import time

import torch

from core import datasets
from core.jobspec import JobSpec
from core.queue import make_celery, publish_job
from models.build import build_model
from tests.conftest import load_example, start_worker, training_children, wait_for_state


def test_digits_mlp_trains_and_its_checkpoint_reproduces_test_accuracy(
    client, worker, tmp_path
):
    response = client.post("/v1/jobs", json=load_example("digits-mlp"))
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    assert response.json()["state"] == "queued"

    job = wait_for_state(client, job_id, {"succeeded", "failed", "cancelled"})
    assert job["state"] == "succeeded", job["error"]
    assert job["attempt"] == 1
    test_accuracy = job["summary"]["test"]["test_accuracy"]
    assert test_accuracy >= 0.90
    assert job["progress"]["step"] == job["progress"]["total_steps"] > 0
    assert job["summary"]["best"]["val_accuracy"]["value"] > 0.9

    series = client.get(f"/v1/jobs/{job_id}/metrics").json()["series"]
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                 "samples_per_s", "train_loss_step", "test_accuracy"):
        assert name in series, f"{name} missing from {sorted(series)}"
    for name, points in series.items():
        steps = points["step"]
        assert all(a < b for a, b in zip(steps, steps[1:], strict=False)), name
    assert len(series["val_loss"]["step"]) == 20  # one per epoch
    assert series["train_loss"]["value"][-1] < series["train_loss"]["value"][0]

    names = client.get(f"/v1/jobs/{job_id}/metrics", params={"names": "val_loss",
                                                             "since_step": 100}).json()
    assert list(names["series"]) == ["val_loss"]
    assert min(names["series"]["val_loss"]["step"]) > 100

    checkpoints = client.get(f"/v1/jobs/{job_id}/checkpoints").json()
    assert 1 <= len(checkpoints) <= 4  # the last 3 and the best
    final = max(checkpoints, key=lambda c: c["step"])
    assert final["step"] == job["progress"]["total_steps"]
    download = client.get(f"/v1/jobs/{job_id}/checkpoints/{final['id']}/download")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == final["sha256"]
    path = tmp_path / "final.pt"
    path.write_bytes(download.content)

    state = torch.load(path, weights_only=True)
    spec = JobSpec.model_validate(state["spec"])
    model, _ = build_model(spec.model, (1, 8, 8))
    model.load_state_dict(state["model"])
    model.eval()
    arrays = datasets.load("digits", spec.dataset.options())
    x = (torch.from_numpy(arrays.x_test) - state["normalization"]["mean"]) / state[
        "normalization"]["std"]
    with torch.no_grad():
        predicted = model(x).argmax(dim=1).numpy()
    reproduced = float((predicted == arrays.y_test).mean())
    assert abs(reproduced - test_accuracy) < 1e-9
    assert state["metrics"]["test_accuracy"] == test_accuracy


def test_the_same_job_id_published_twice_trains_once(client, worker, service_env,
                                                     settings, tmp_path):
    second = start_worker(service_env, tmp_path, name="w2")
    try:
        spec = load_example("digits-mlp") | {"training": {"epochs": 3, "batch_size": 64}}
        job_id = client.post("/v1/jobs", json=spec).json()["id"]
        publisher = make_celery(settings)
        assert publish_job(publisher, job_id, settings)
        assert publish_job(publisher, job_id, settings)
        job = wait_for_state(client, job_id, {"succeeded", "failed"})
        assert job["state"] == "succeeded", job["error"]
        # Wait until both extra messages have reached a worker and been dropped.
        deadline = time.monotonic() + 30
        while (worker.log() + second.log()).count(f"job {job_id} is not queued") < 2:
            assert time.monotonic() < deadline, "the duplicate messages were never consumed"
            time.sleep(0.1)
        logs = worker.log() + second.log()
        assert logs.count(f"job {job_id} attempt 1: training child") == 1
        assert f"job {job_id} attempt 2" not in logs
        assert logs.count(f"job {job_id} is not queued") >= 2
        assert client.get(f"/v1/jobs/{job_id}").json()["attempt"] == 1
    finally:
        second.stop()


def test_cancel_during_training_stops_the_child_within_seconds(client, worker):
    spec = load_example("digits-mlp") | {"training": {"epochs": 5000, "batch_size": 32}}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/v1/jobs/{job_id}").json()["progress"].get("step", 0) < 50:
        assert time.monotonic() < deadline, "the job never started training"
        time.sleep(0.2)
    assert training_children(job_id, worker.log()), "no training child is running"

    asked = time.monotonic()
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    job = wait_for_state(client, job_id, {"cancelled", "succeeded", "failed"}, timeout=10)
    assert job["state"] == "cancelled"
    assert time.monotonic() - asked < 3.0
    time.sleep(0.5)
    assert training_children(job_id, worker.log()) == []
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409


def test_cancel_right_after_submit_ends_in_cancelled(client):
    spec = load_example("digits-mlp")
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    job = client.post(f"/v1/jobs/{job_id}/cancel").json()
    # Either the cancel won the race against the worker's claim, or the worker's supervisor
    # sees the flag within a second: both end in cancelled.
    if job["state"] != "cancelled":
        job = wait_for_state(client, job_id, {"cancelled"}, timeout=10)
    assert job["state"] == "cancelled"
