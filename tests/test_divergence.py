"""A job that diverges keeps its curves: on real processes (API, worker, training child,
PostgreSQL), a job whose loss blows up is stopped by the diagnosis (worker/diagnosis.py:
its smoothed loss above 4x its best) and fails with advice for its spec; its series, stored
up to that step, its progress, at that step, and its final diagnosis are in the API, and the
curves are drawn on its page in Chromium."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import load_example, wait_for_state

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def diverging_spec() -> dict:
    """digits-mlp with SGD warmed up to a rate far too high: it learns for two epochs, then
    the loss climbs past 4x its best (at step 53, in the third epoch). At a constant rate of
    5 it diverged at step 12, before any evaluation: the test wants two epochs' points."""
    spec = copy.deepcopy(load_example("digits-mlp"))
    spec["name"] = "diverging"
    spec["optimizer"] = {"type": "sgd", "lr": 2.0, "momentum": 0.9}
    spec["schedule"] = {"type": "warmup", "warmup_length": 150, "start_factor": 0.001,
                        "then": "constant"}
    spec["training"] = {"epochs": 10, "batch_size": 64, "seed": 0}  # 21 steps an epoch
    return spec


@pytest.fixture(scope="module")
def diverged(api_url: str, worker) -> dict:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        created = client.post("/v1/jobs", json=diverging_spec())
        assert created.status_code == 201, created.text
        return wait_for_state(client, created.json()["id"], {"succeeded", "failed", "cancelled"})


def divergence_step(job: dict) -> int:
    found = re.search(r"^diverged at step (\d+): ", job["error"] or "")
    assert found, job["error"]
    return int(found.group(1))


def test_a_diverged_job_keeps_its_series_and_its_progress_up_to_the_blow_up(client, diverged):
    assert diverged["state"] == "failed", diverged
    assert "lower the learning rate (optimizer.lr) from 2 to 0.2" in diverged["error"]
    assert "warm-up" not in diverged["error"]  # the spec has one
    step = divergence_step(diverged)
    per_epoch = diverged["progress"]["total_steps"] // diverging_spec()["training"]["epochs"]
    assert step > per_epoch, "diverged in the first epoch: the test wants two epochs' points"
    assert diverged["progress"]["step"] == step
    assert diverged["progress"]["epoch"] == (step - 1) // per_epoch + 1

    series = client.get(f"/v1/jobs/{diverged['id']}/metrics",
                        params={"max_points": 100_000}).json()["series"]
    # Logged every step (fewer than 50 steps an epoch): every one up to the step the job
    # stopped at is stored, the last ones, where the loss climbed past 4x its best, included.
    assert series["train_loss_step"]["step"] == list(range(1, step + 1))
    values = series["train_loss_step"]["value"]
    assert values[-1] > 4 * min(values)
    epochs_done = (step - 1) // per_epoch
    assert series["val_loss"]["step"] == [per_epoch * e for e in range(1, epochs_done + 1)]
    summary = diverged["summary"]
    assert summary["latest"]["train_loss"] == pytest.approx(series["train_loss"]["value"][-1])
    diagnosis = diverged["diagnosis"]  # served beside the summary, not in it
    assert diagnosis["final"] is True and diagnosis["step"] == step
    divergence = diagnosis["findings"][0]
    assert (divergence["name"], divergence["severity"]) == ("divergence", "error")
    assert divergence["actions"][0] == {"field": "optimizer.lr", "value": 0.2,
                                        "why": divergence["actions"][0]["why"]}


def test_the_job_page_draws_a_diverged_job(api_url: str, diverged):
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]'")
    with httpx.Client(base_url=api_url, timeout=30) as client:
        stored = client.get(f"/v1/jobs/{diverged['id']}/metrics",
                            params={"max_points": 100_000}).json()["series"]
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(base_url=api_url)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"/jobs/{diverged['id']}")
            sync_api.expect(page.locator("#job-state .badge")).to_have_text("failed")
            page.wait_for_function("() => window.traindock.settled === true")
            page.wait_for_function(
                "() => Number(document.getElementById('chart-loss').dataset.points || 0) > 0")
            sync_api.expect(page.locator("#no-metrics")).to_be_hidden()
            step = divergence_step(diverged)
            sync_api.expect(page.locator("#job-progress")).to_contain_text(f"step {step}/")
            drawn = page.evaluate("() => window.traindock.series")
        finally:
            browser.close()
    assert {name: s["step"] for name, s in drawn.items()} == {
        name: s["step"] for name, s in stored.items()}
    assert not errors, errors
