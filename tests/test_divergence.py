"""A job that diverges keeps its curves: on real processes (API, worker, training child,
PostgreSQL), a job driven to an infinite loss fails with advice, and its series, stored up to
the step before the blow-up, and its progress, at that step, are in the API and drawn on its
page in Chromium."""

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
    """digits-mlp with plain SGD at a rate far too high: the loss grows by about ten times a
    step and becomes infinite after the first epoch (at step 47)."""
    spec = copy.deepcopy(load_example("digits-mlp"))
    spec["name"] = "diverging"
    spec["optimizer"] = {"type": "sgd", "lr": 5.0, "momentum": 0.9}
    spec["training"] = {"epochs": 5, "batch_size": 64, "seed": 0}
    return spec


@pytest.fixture(scope="module")
def diverged(api_url: str, worker) -> dict:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        created = client.post("/v1/jobs", json=diverging_spec())
        assert created.status_code == 201, created.text
        return wait_for_state(client, created.json()["id"], {"succeeded", "failed", "cancelled"})


def divergence_step(job: dict) -> int:
    found = re.search(r"became (?:inf|-inf|nan) at step (\d+)", job["error"] or "")
    assert found, job["error"]
    return int(found.group(1))


def test_a_diverged_job_keeps_its_series_and_its_progress_up_to_the_blow_up(client, diverged):
    assert diverged["state"] == "failed", diverged
    assert "lower the learning rate" in diverged["error"]
    step = divergence_step(diverged)
    per_epoch = diverged["progress"]["total_steps"] // diverging_spec()["training"]["epochs"]
    assert step > per_epoch, "diverged in the first epoch: the test wants two epochs' points"
    assert diverged["progress"]["step"] == step
    assert diverged["progress"]["epoch"] == (step - 1) // per_epoch + 1

    series = client.get(f"/v1/jobs/{diverged['id']}/metrics",
                        params={"max_points": 100_000}).json()["series"]
    # Logged every step (fewer than 50 steps an epoch): every one before the blow-up is
    # stored, the last ones, where the loss grew by orders of magnitude, included.
    assert series["train_loss_step"]["step"] == list(range(1, step))
    values = series["train_loss_step"]["value"]
    assert values[-1] > 1e6 * values[0]
    epochs_done = (step - 1) // per_epoch
    assert series["val_loss"]["step"] == [per_epoch * e for e in range(1, epochs_done + 1)]
    summary = diverged["summary"]
    assert summary["latest"]["train_loss"] == pytest.approx(series["train_loss"]["value"][-1])


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
