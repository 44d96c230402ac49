"""Structured logs from the real processes: the API's lines are JSON carrying the request id,
the worker's name the job and attempt, the training process writes a JSON-lines copy of its
log while the attempt log that `traindock logs` shows stays readable text."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import httpx

from core.attempt_logs import attempt_log_path
from core.log_format import resolve_format
from core.settings import Settings
from tests.conftest import Service, load_example, start_api, wait_for_state

FIELDS = {"time", "level", "logger", "message"}


def json_lines(text: str) -> list[dict]:
    """Every line that is a JSON object (Celery prints its banner as plain text)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_api_lines_are_json_with_the_request_id(service_env: dict[str, str],
                                                tmp_path: Path) -> None:
    api, base = start_api(service_env, tmp_path, TRAINDOCK_LOG_FORMAT="json")
    try:
        response = httpx.get(f"{base}/v1/jobs", headers={"X-Request-ID": "trace-42"},
                             timeout=30)
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "trace-42"
        missing = httpx.get(f"{base}/v1/jobs/00000000-0000-0000-0000-000000000000",
                            timeout=30)
        made = missing.headers["x-request-id"]
    finally:
        api.stop()
    lines = [line for line in api.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line: not one is plain text
    assert all(entry.keys() >= FIELDS for entry in entries)
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert [e["request_id"] for e in access if "/v1/jobs " in e["message"]] == ["trace-42"]
    assert any(e["request_id"] == made and " 404" in e["message"] for e in access)
    assert any("Application startup complete" in e["message"] for e in entries)


def test_api_lines_are_text_when_asked(service_env: dict[str, str], tmp_path: Path) -> None:
    api, base = start_api(service_env, tmp_path, TRAINDOCK_LOG_FORMAT="text")
    api.stop()
    lines = [line for line in api.log().splitlines() if line.strip()]
    assert lines and not any(line.startswith("{") for line in lines)
    assert any(" INFO uvicorn.error Application startup complete" in line for line in lines)


def test_worker_and_training_lines_name_the_job_and_attempt(
        client: httpx.Client, worker: Service, settings: Settings) -> None:
    spec = load_example("digits-mlp") | {"name": "json-logs"}
    spec["training"] = spec["training"] | {"epochs": 1}
    created = client.post("/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    wait_for_state(client, job_id, {"succeeded"})

    # The worker (its output is a file, so `auto` chose JSON).
    mine = [e for e in json_lines(worker.log()) if e.get("job_id") == job_id]
    assert any("training child pid" in e["message"] and e["attempt"] == 1 for e in mine), mine
    assert all(e.keys() >= FIELDS for e in mine)

    # The training process: a JSON copy, every line naming the job and attempt...
    text_log = attempt_log_path(settings.log_dir, uuid.UUID(job_id), 1)
    copy = text_log.with_suffix(".jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in copy]
    assert entries and all(e["job_id"] == job_id and e["attempt"] == 1 for e in entries)
    assert any(e["message"].startswith("ready to train after") for e in entries)
    assert all(e.keys() >= FIELDS for e in entries)
    # ... and the attempt's log, as `traindock logs` shows it, stays text.
    shown = client.get(f"/v1/jobs/{job_id}/logs").text
    assert "ready to train after" in shown
    assert not any(line.startswith("{") for line in shown.splitlines())


def test_auto_is_text_on_a_terminal_and_json_elsewhere(tmp_path: Path) -> None:
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal, open(tmp_path / "f", "w") as file:
        assert resolve_format("auto", terminal) == "text"
        assert resolve_format("auto", file) == "json"
        assert resolve_format("json", terminal) == "json"
        assert resolve_format("text", file) == "text"
    os.close(leader)
