"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the real
API, worker and database. Every test also checks that its pages logged no console error and
requested nothing beyond 127.0.0.1. Screenshots of each page land in test-artifacts/."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ROOT, load_example, wait_for_state

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]'")
expect = sync_api.expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
FINAL = {"succeeded", "failed", "cancelled"}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's Chromium: apt-get install -y chromium"
)


def digits_mlp(name: str, **changes: dict) -> dict:
    """The digits-mlp example with some sections updated, e.g. training={"epochs": 3}."""
    spec = copy.deepcopy(load_example("digits-mlp"))
    spec["name"] = name
    for section, values in changes.items():
        spec[section].update(values)
    return spec


def submit(client: httpx.Client, spec: dict) -> str:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def cancel_unless_final(client: httpx.Client, job_id: str) -> None:
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code in (202, 409), response.text
    wait_for_state(client, job_id, FINAL, timeout=30)


def screenshot(page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"dashboard-{name}.png", full_page=full_page)


def is_spec_rejection(message) -> bool:
    """Chromium logs every 4xx answer to a fetch as a console error; a 422 to a spec that the
    submit page posts is the answer it is there to show."""
    return (message.text.startswith("Failed to load resource") and "status of 422" in message.text
            and urlsplit(message.location.get("url", "")).path in ("/v1/jobs", "/v1/jobs/validate"))


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, api_url: str) -> Iterator:
    """A fresh page on the API's address; at teardown, fails on console errors, uncaught
    exceptions and requests to any host but 127.0.0.1."""
    context = browser.new_context(base_url=api_url, viewport={"width": 1280, "height": 860})
    problems: list[str] = []
    foreign: list[str] = []

    def on_request(request) -> None:
        url = urlsplit(request.url)
        if url.scheme not in ("data", "blob", "about") and url.hostname != "127.0.0.1":
            foreign.append(request.url)

    context.on("request", on_request)
    page = context.new_page()
    page.set_default_timeout(15_000)

    def on_console(message) -> None:
        if message.type == "error" and not is_spec_rejection(message):
            problems.append(f"{page.url}: console.error: {message.text} {message.location}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(f"{page.url}: uncaught {e}"))
    yield page
    context.close()
    assert not problems, "\n".join(problems)
    assert not foreign, f"requests left 127.0.0.1: {foreign}"


@pytest.fixture(scope="module")
def running_job(client_module: httpx.Client, worker) -> Iterator[str]:
    """A long job, running while the tests watch; cancelled at the end. No dropout and a high
    learning rate, so that its validation loss turns up early: the over-fitting picture."""
    spec = digits_mlp("dashboard-live", training={"epochs": 300, "batch_size": 32},
                      optimizer={"lr": 0.01})
    spec["model"]["layers"] = [layer for layer in spec["model"]["layers"]
                               if layer["type"] != "dropout"]
    job_id = submit(client_module, spec)
    wait_for_state(client_module, job_id, {"running"} | FINAL, timeout=90)
    yield job_id
    cancel_unless_final(client_module, job_id)


@pytest.fixture(scope="module")
def compare_jobs(client_module: httpx.Client, worker) -> list[str]:
    """Two short jobs that differ in the learning rate only, submitted first so that they
    train while the submit page is tested."""
    return [submit(client_module, digits_mlp("dashboard-compare", training={"epochs": 8},
                                             optimizer={"lr": lr}))
            for lr in (0.01, 0.001)]


@pytest.fixture(scope="module")
def client_module(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as http:
        yield http


def test_submit_names_the_bad_layer_then_submits_a_good_spec(page, client, compare_jobs):
    page.goto("/submit")
    expect(page.locator("#spec")).to_have_value(re.compile('"name": "digits-mlp"'))
    bad = {"name": "dashboard-bad", "dataset": {"name": "digits"},
           "model": {"layers": [{"type": "conv2d", "out_channels": 8},
                                {"type": "linear", "out_features": 10}]}}
    page.fill("#spec", json.dumps(bad, indent=2))
    page.click("#validate")
    expect(page.locator("#result")).to_have_attribute("data-outcome", "invalid")
    expect(page.locator(".problems .field")).to_have_text(["model.layers[1]"])
    expect(page.locator(".problems li")).to_contain_text(["add a flatten layer first"])
    screenshot(page, "submit")

    page.fill("#spec", json.dumps(digits_mlp("dashboard-submitted", training={"epochs": 1})))
    page.click("#validate")
    expect(page.locator("#result")).to_have_attribute("data-outcome", "valid")
    expect(page.locator("#result tfoot")).to_contain_text("9,610")
    page.click("#submit")
    page.wait_for_url("**/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#job-name")).to_have_text("dashboard-submitted")
    cancel_unless_final(client, job_id)


def test_compare_overlays_two_finished_jobs_labelled_by_what_differs(page, client, compare_jobs):
    ids = compare_jobs
    for job_id in ids:
        assert wait_for_state(client, job_id, FINAL, timeout=90)["state"] == "succeeded"

    page.goto(f"/compare?ids={','.join(ids)}")
    chart = page.locator("#chart-compare")
    expect(chart).to_have_attribute("data-series", "2")
    assert page.input_value("#metric") == "val_loss"
    labels = page.locator(".u-legend .u-series .u-label").all_text_contents()
    lines = sorted(label for label in labels if label != "epoch")  # the x series has a row too
    assert lines == ["optimizer.lr=0.001", "optimizer.lr=0.01"], labels
    assert int(chart.get_attribute("data-points")) == 16  # 8 epochs of val_loss per job
    expect(page.locator("#differences th")).to_contain_text(["optimizer.lr"])
    screenshot(page, "compare")


def test_job_list_shows_the_running_job_and_picks_jobs_to_compare(page, running_job,
                                                                    compare_jobs):
    page.goto("/")
    row = page.locator(f'tr[data-job-id="{running_job}"]')
    expect(row.locator(".badge")).to_have_text("running")
    expect(row).to_contain_text("dashboard-live")
    for job_id in compare_jobs:
        page.check(f'tr[data-job-id="{job_id}"] input[type=checkbox]')
    expect(page.locator("#compare")).to_have_text("Compare (2)")
    screenshot(page, "list")

    page.select_option("#state-filter", "succeeded")
    expect(row).to_have_count(0)
    page.select_option("#state-filter", "running")
    expect(row).to_have_count(1)
    assert page.url.endswith("/?state=running")
    page.click("#compare")
    page.wait_for_url("**/compare?ids=*")
    assert sorted(page.url.split("ids=")[1].split(",")) == sorted(compare_jobs)


def test_job_page_curve_grows_live_and_cancel_stops_it(page, client, running_job):
    page.goto(f"/jobs/{running_job}")
    # Functions, not expressions: Playwright evals expressions, which the pages' CSP forbids.
    more_than = "n => Number(document.getElementById('chart-loss').dataset.points || 0) > n"
    page.wait_for_function(more_than, arg=0, timeout=30_000)  # the first steps, or the history
    first = int(page.get_attribute("#chart-loss", "data-points"))
    time.sleep(3)
    page.wait_for_function(more_than, arg=first, timeout=15_000)
    transport = page.evaluate("window.traindock.transport")
    assert transport in ("stream", "polling"), transport
    expect(page.locator("#model tbody tr")).to_have_count(5)  # input, flatten, linear, relu, linear
    time.sleep(2)  # a few more epochs for the screenshot
    screenshot(page, "job", full_page=False)  # the header and the charts

    page.click("#cancel")
    expect(page.locator("#job-state .badge")).to_have_text("cancelled", timeout=20_000)
    expect(page.locator("#cancel")).to_be_hidden()
    # Whatever way the points came (stream or polling), the page ends with every one of them.
    page.wait_for_function("() => window.traindock.settled === true")
    drawn = page.evaluate("() => window.traindock.series")
    stored = client.get(f"/v1/jobs/{running_job}/metrics?max_points=100000").json()["series"]
    assert {name: s["step"] for name, s in drawn.items()} == {
        name: s["step"] for name, s in stored.items()}



def test_job_page_shows_warnings_notes_the_gradient_check_and_the_summary(page, client, worker):
    spec = {"name": "dashboard-notes", "gradcheck": True,
            "dataset": {"name": "spirals", "n_samples": 200, "val_fraction": 0.3},
            "model": {"layers": [{"type": "linear", "out_features": 64}, {"type": "relu"},
                                 {"type": "batchnorm"}, {"type": "linear", "out_features": 3},
                                 {"type": "softmax"}]},
            "optimizer": {"type": "adam", "lr": 0.05},
            "training": {"epochs": 100, "batch_size": 32, "checkpoint_every_epochs": 0,
                         "early_stopping": {"patience": 2}}}
    job_id = submit(client, spec)
    done = wait_for_state(client, job_id, FINAL, timeout=90)
    assert done["state"] == "succeeded", done["error"]

    page.goto(f"/jobs/{job_id}")
    notes = page.locator("#job-notes li")
    expect(notes).to_have_count(3)
    expect(notes.nth(0)).to_have_class("warning")
    expect(notes.nth(0)).to_contain_text("model.layers[4] (softmax)")
    expect(notes.nth(1)).to_contain_text("early stopping at epoch")
    expect(notes.nth(2)).to_contain_text("gradient check: correct (6 tensors")
    model = done["model"]
    footer = page.locator("#model tfoot td")
    expect(footer).to_have_text(["total", f"{model['total_params']:,}",
                                 f"{model['non_trainable_params']:,}",
                                 f"{model['total_flops']:,}"])
    expect(page.locator("#card-update")).to_be_visible()
    # The diagnosis's statistics: a ReLU layer's inactive share and every layer's near-zero
    # weights; no sigmoid or tanh here, so no saturation chart.
    expect(page.locator("#card-dead")).to_be_visible()
    expect(page.locator("#card-zero")).to_be_visible()
    expect(page.locator("#card-saturated")).to_be_hidden()
    screenshot(page, "notes")
