"""The quick lessons through the service, as a user runs them: each fault lesson's job must
carry its finding in `GET /v1/jobs/{id}`'s diagnosis, and its healthy twin must carry none
(docs/lessons.md says what each lesson shows; docs/diagnosis.md the rules). The specs are the
lessons' own files, seed 0, submitted together so that the worker's queue, not this test,
sets the pace (about 30 s in all on a busy 2-core machine).
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import ROOT, wait_for_state

LESSONS = ROOT / "examples" / "lessons"
ENDED = {"succeeded", "failed", "cancelled"}

# spec -> (findings of which at least one must be reported, findings allowed beside none)
FAULTS = {
    "deep-sigmoid/sigmoid": {"vanishing_gradients", "stuck_at_chance"},
    "learning-rate/too-high": {"divergence"},
    "overfitting/none": {"overfitting"},
}
HEALTHY = {
    # A deep ReLU net on 1,150 digits: on some seeds its val_loss ends above its best, and
    # over-fitting is then true of it (bench/diagnosis/manifest.json); never a gradient or
    # a chance finding.
    "deep-sigmoid/relu-he": {"overfitting"},
    "learning-rate/good": set(),
}


def _spec(name: str) -> dict:
    spec = json.loads((LESSONS / f"{name}.json").read_text())
    spec["training"]["seed"] = 0
    spec["dataset"]["seed"] = 0
    return spec


def _names(job: dict) -> set[str]:
    return {f["name"] for f in job["diagnosis"]["findings"]
            if f["severity"] in ("warning", "error")}


@pytest.fixture(scope="module")
def lesson_jobs(api_url: str, worker) -> dict[str, dict]:
    """Every lesson of this file submitted at once, then each waited for."""
    with httpx.Client(base_url=api_url, timeout=30) as client:
        ids = {}
        for name in [*FAULTS, *HEALTHY]:
            response = client.post("/v1/jobs", json=_spec(name))
            assert response.status_code == 201, (name, response.text)
            ids[name] = response.json()["id"]
        return {name: wait_for_state(client, job_id, ENDED, timeout=180)
                for name, job_id in ids.items()}


@pytest.mark.parametrize("lesson", sorted(FAULTS))
def test_a_fault_lesson_names_its_fault(lesson_jobs: dict[str, dict], lesson: str) -> None:
    job = lesson_jobs[lesson]
    assert job["diagnosis"]["final"] is True, job["diagnosis"]
    found = _names(job)
    assert found & FAULTS[lesson], (lesson, job["state"], job["diagnosis"])
    for finding in job["diagnosis"]["findings"]:
        assert finding["evidence"] and finding["actions"], finding
    if lesson == "learning-rate/too-high":
        assert job["state"] == "failed" and job["error"].startswith("diverged at step"), job
    else:
        assert job["state"] == "succeeded", job


@pytest.mark.parametrize("lesson", sorted(HEALTHY))
def test_the_healthy_twin_names_nothing(lesson_jobs: dict[str, dict], lesson: str) -> None:
    job = lesson_jobs[lesson]
    assert job["state"] == "succeeded", job
    assert job["diagnosis"]["final"] is True
    assert _names(job) <= HEALTHY[lesson], (lesson, job["diagnosis"])
    assert job["summary"]["preflight"]["verdict"] == "pass", job["summary"]["preflight"]
