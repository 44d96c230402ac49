"""The sweep and compare pages in Chromium against the real API, worker and database. One
sweep (3 learning rates x 2 seeds of tiny digits trials) is shared by the module: its page,
opened while the first trial is queued, polls until the sweep has ended, then shows a row per
trial job with the best configuration's marked, each configuration's mean ± std, sorts by a
clicked column, draws the parallel-coordinates canvas and the charts; the sweep list shows it
from one request; the job list folds its trials under one sweep row; Promote and Cancel work,
and a read-only key's 403 is shown as the API words it. The compare page labels jobs by what
differs (by name when their architectures differ), stays within the window with 5 mixed jobs,
and toggles best, final and test values with each metric's leader marked. (Browser and page
fixtures: tests/test_dashboard.py.)"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import httpx
import pytest

from tests.conftest import load_example, make_api_key, wait_for_state
from tests.test_dashboard import (  # noqa: F401 - browser, page and client_module are fixtures
    FINAL,
    browser,
    client_module,
    digits_mlp,
    expect,
    page,
    screenshot,
    submit,
)
from tests.test_sweeps import tiny_base, wait_for_sweep

LRS = [0.03, 0.001, 0.01]  # listed out of order, so that trial order is not lr order
REPEATS = 2


def painted_pixels(tab, selector: str) -> int:
    """How many pixels of the canvas are not blank (alpha above zero)."""
    return tab.eval_on_selector(selector, """canvas => {
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
        return painted;
    }""")


@pytest.fixture(scope="module")
def grid_sweep(client_module: httpx.Client, worker) -> dict:  # noqa: F811
    """The shared sweep, created (not finished): {id, name}. Two whole epochs: two
    evaluations, so each trial's curve is a line."""
    body = {"name": f"dash-grid-{uuid.uuid4().hex[:6]}", "method": "grid", "parallelism": 1,
            "repeats": REPEATS, "base": tiny_base(epochs=2, max_steps=60),
            "parameters": {"optimizer.lr": {"values": LRS}},
            "objective": {"metric": "val_loss", "at": "final"}}
    created = client_module.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    return {"id": created.json()["id"], "name": body["name"]}


@pytest.fixture(scope="module")
def finished(client_module: httpx.Client, grid_sweep: dict) -> dict:  # noqa: F811
    """The shared sweep once it has ended, as GET /v1/sweeps/{id} says."""
    sweep = wait_for_sweep(client_module, grid_sweep["id"], FINAL, timeout=180)
    assert sweep["state"] == "succeeded", sweep
    return sweep


def test_the_sweep_page_marks_the_best_trial_sorts_and_draws(page, grid_sweep, client):  # noqa: F811
    sweep_id = grid_sweep["id"]
    # Opened while the first trial is queued: the page polls until the sweep has ended.
    page.goto(f"/sweeps/{sweep_id}")
    expect(page.locator("#sweep-head")).to_have_attribute("data-state", "succeeded",
                                                          timeout=180_000)
    sweep = wait_for_sweep(client, sweep_id, FINAL, timeout=10)
    best = sweep["best"]["trial_number"]

    rows = page.locator("#trials tbody tr")
    expect(rows).to_have_count(len(LRS) * REPEATS)
    expect(page.locator("#trials tbody tr.best")).to_have_count(REPEATS)  # each seed's row
    assert set(page.locator("#trials tbody tr.best").evaluate_all(
        "rows => rows.map(r => r.dataset.trial)")) == {str(best)}
    headers = page.locator("#trials thead th")
    expect(headers).to_contain_text(["optimizer.lr", "repeat (seed)", "mean ± std val_loss",
                                     "state", "best val_loss", "final val_loss", "duration"],
                                    use_inner_text=True)
    best_trial = sweep["trials"][best]
    best_row = page.locator(f'#trials tbody tr[data-trial="{best}"][data-repeat="1"]')
    expect(best_row).to_contain_text(" ± ")  # the configuration's mean ± std over its seeds
    expect(best_row).to_contain_text(f"1 ({best_trial['jobs'][1]['seed']})")  # and its seed
    expect(page.locator("#best")).to_contain_text(f"over {REPEATS} seeds")

    def trial_order() -> list[int]:
        return [int(n) for n in rows.evaluate_all("rows => rows.map(r => r.dataset.trial)")]

    assert trial_order() == [n for n in range(len(LRS)) for _ in range(REPEATS)]
    by_lr = [n for _, n in sorted((trial["params"]["optimizer.lr"], trial["number"])
                                  for trial in sweep["trials"])]
    page.click('#trials th[data-key="param:optimizer.lr"]')
    assert trial_order()[::REPEATS] == by_lr
    expect(page.locator('#trials th[data-key="param:optimizer.lr"]')).to_have_attribute(
        "aria-sort", "ascending")
    page.click('#trials th[data-key="param:optimizer.lr"]')
    assert trial_order()[::REPEATS] == by_lr[::-1]
    page.click('#trials th[data-key="mean"]')
    assert trial_order()[0] == best  # lowest mean final val_loss first: the objective's best
    finals = [job["final"] for trial in sweep["trials"] for job in trial["jobs"]]
    page.click('#trials th[data-key="final"]')
    shown = rows.evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    by_final = {job["id"]: job["final"] for trial in sweep["trials"] for job in trial["jobs"]}
    assert [by_final[i] for i in shown] == sorted(finals)

    canvas = page.locator("#parallel")
    expect(canvas).to_have_attribute("data-lines", str(len(LRS)))
    assert painted_pixels(page, "#parallel") > 2000
    expect(page.locator("#chart-objective")).to_have_attribute("data-series", "2")
    expect(page.locator("#chart-top")).to_have_attribute("data-series", "3")
    assert int(page.locator("#chart-top").get_attribute("data-points")) >= 6  # lines: 2 each
    expect(page.locator("#best")).to_contain_text(f"trial {best}")
    expect(page.locator("#cancel-sweep")).to_be_hidden()  # it has ended
    screenshot(page, "sweep")

    trial_job = best_trial["jobs"][0]["id"]
    page.goto(f"/jobs/{trial_job}")
    expect(page.locator("#job-sweep")).to_have_text(f"trial {best} of sweep {sweep_id[:8]}")
    expect(page.locator("#job-sweep a")).to_have_attribute("href", f"/sweeps/{sweep_id}")


def test_the_sweep_list_shows_the_sweep_from_one_request(page, grid_sweep, finished):  # noqa: F811
    asked: list[str] = []
    page.on("request", lambda r: asked.append(urlsplit(r.url).path)
            if urlsplit(r.url).path.startswith("/v1/") else None)
    page.goto("/sweeps")
    row = page.locator(f'tr[data-sweep-id="{grid_sweep["id"]}"]')
    expect(row).to_contain_text(grid_sweep["name"])
    expect(row).to_contain_text(f"{len(LRS)}/{len(LRS)}")
    assert set(asked) == {"/v1/sweeps"}  # no request per sweep
    row.locator("a").click()
    page.wait_for_url(f"**/sweeps/{grid_sweep['id']}")


def test_the_job_list_folds_a_sweeps_trials_into_one_row(page, grid_sweep, finished):  # noqa: F811
    page.goto("/")
    group = page.locator(f'tr.sweep-group[data-sweep-id="{grid_sweep["id"]}"]')
    expect(group).to_have_count(1)
    expect(group).to_have_attribute("data-trials", str(len(LRS) * REPEATS))
    expect(group.locator("a")).to_have_attribute("href", f"/sweeps/{grid_sweep['id']}")
    expect(group).to_contain_text(f"{len(LRS)}/{len(LRS)} ended")
    best = finished["best"]
    shown = page.evaluate("value => value.toPrecision(4)", best["value"])  # as formatValue
    expect(group).to_contain_text(f"{shown} val_loss")
    trial_job = finished["trials"][best["trial_number"]]["jobs"][0]["id"]
    trial_row = page.locator(f'tr[data-job-id="{trial_job}"]')
    expect(trial_row).to_have_count(0)  # folded
    group.locator("button.toggle").click()
    expect(trial_row.locator(".sweep-tag")).to_have_text(
        f"trial {best['trial_number']} of sweep {grid_sweep['name']}")
    expect(page.locator(f'tr[data-job-id] .sweep-tag a[href="/sweeps/{grid_sweep["id"]}"]')
           ).to_have_count(len(LRS) * REPEATS)
    screenshot(page, "list-sweep")
    group.locator("button.toggle").click()
    expect(trial_row).to_have_count(0)
    page.select_option("#state-filter", "succeeded")  # filtered: trials one by one
    expect(trial_row).to_have_count(1)
    expect(group).to_have_count(0)


def test_promote_submits_the_best_and_cancel_stops_a_sweep(page, client, finished):  # noqa: F811
    page.goto(f"/sweeps/{finished['id']}")
    expect(page.locator("#promote")).to_be_enabled()
    page.click("#promote")
    link = page.locator("#promoted-job")
    expect(link).to_have_text(f"{finished['name']}-best")
    job_id = link.get_attribute("href").rsplit("/", 1)[1]
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["spec"]["optimizer"]["lr"] == finished["best"]["params"]["optimizer.lr"]
    client.post(f"/v1/jobs/{job_id}/cancel")

    body = {"name": f"dash-cancel-{uuid.uuid4().hex[:6]}", "method": "grid",
            "base": tiny_base(epochs=50, max_steps=5000), "parallelism": 1,
            "parameters": {"optimizer.lr": {"values": [0.01, 0.1]}}}
    created = client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    page.goto(f"/sweeps/{sweep_id}")
    page.click("#cancel-sweep")
    expect(page.locator("#sweep-head")).to_have_attribute("data-state", "cancelled")
    expect(page.locator("#cancel-sweep")).to_be_hidden()
    for trial in client.get(f"/v1/sweeps/{sweep_id}").json()["trials"]:
        for trial_job in trial["jobs"]:
            wait_for_state(client, trial_job["id"], FINAL, timeout=30)


def test_a_read_only_key_sees_why_it_cannot_cancel(browser, auth_api_url, settings):  # noqa: F811
    owner = f"ro-{uuid.uuid4().hex[:6]}"
    writer = make_api_key(settings, "read,submit", owner)
    reader = make_api_key(settings, "read", owner)
    body = {"name": f"dash-ro-{uuid.uuid4().hex[:6]}", "method": "grid", "parallelism": 1,
            "base": tiny_base(), "parameters": {"optimizer.lr": {"values": [0.01, 0.1]}}}
    with httpx.Client(base_url=auth_api_url, timeout=30,
                      headers={"authorization": f"Bearer {writer}"}) as http:
        created = http.post("/v1/sweeps", json=body)
        assert created.status_code == 201, created.text
        sweep_id = created.json()["id"]
        context = browser.new_context(base_url=auth_api_url)
        try:
            tab = context.new_page()
            tab.set_default_timeout(15_000)
            tab.goto(f"/signin?next={quote(f'/sweeps/{sweep_id}', safe='')}")
            tab.fill("#key", reader)
            tab.click("#signin")
            tab.wait_for_url(re.compile(rf"/sweeps/{sweep_id}$"))
            expect(tab.locator("#sweep-name")).to_have_text(body["name"])
            tab.click("#cancel-sweep")
            alert = tab.locator("#action-result .alert")
            expect(alert).to_have_attribute("data-status", "403")
            expect(alert).to_contain_text("lacks the 'submit' scope")
        finally:
            context.close()
            http.post(f"/v1/sweeps/{sweep_id}/cancel")


def mixed_jobs(client: httpx.Client) -> list[str]:
    """5 jobs of 3 architectures (one with an inserted dropout, one deeper), two of them of
    the same name; cancelled at once: labels and widths need no training."""
    layers = load_example("digits-mlp")["model"]["layers"]
    dropout_first = copy.deepcopy(layers)
    dropout_first.insert(1, {"type": "dropout", "p": 0.1})
    deeper = layers[:3] + [{"type": "linear", "out_features": 64}, {"type": "relu"}] + layers[3:]
    specs = [digits_mlp("mixed-base", optimizer={"lr": 0.01}),
             digits_mlp("mixed-base", optimizer={"lr": 0.001}),
             digits_mlp("mixed-dropout"), digits_mlp("mixed-deeper"),
             digits_mlp("mixed-deeper-wide")]
    specs[2]["model"]["layers"] = dropout_first
    specs[3]["model"]["layers"] = deeper
    specs[4]["model"]["layers"] = copy.deepcopy(deeper)
    specs[4]["model"]["layers"][1]["out_features"] = 512
    ids = [submit(client, spec) for spec in specs]
    for job_id in ids:
        client.post(f"/v1/jobs/{job_id}/cancel")
    return ids


@pytest.fixture(scope="module")
def compare_mixed(client_module: httpx.Client) -> Iterator[list[str]]:  # noqa: F811
    ids = mixed_jobs(client_module)
    yield ids
    for job_id in ids:
        wait_for_state(client_module, job_id, FINAL, timeout=30)


def test_compare_labels_mixed_architectures_by_name_within_the_window(page, compare_mixed):  # noqa: F811
    page.goto(f"/compare?ids={','.join(compare_mixed)}")
    rows = page.locator("#differences tbody tr")
    expect(rows).to_have_count(5)
    expect(page.locator("#architecture-note")).to_be_visible()
    labels = rows.locator("td:nth-child(2)").all_inner_texts()
    assert labels[2:] == ["mixed-dropout", "mixed-deeper", "mixed-deeper-wide"], labels
    assert labels[0].startswith("mixed-base [") and labels[0] != labels[1], labels
    expect(rows.nth(2).locator("td.arch")).to_have_text(
        "flatten → dropout 0.1 → linear 128 → relu → dropout 0.2 → linear 10")
    assert page.locator("#differences th").count() < 12  # never a column per layer field
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1] + 4, width
    screenshot(page, "compare-mixed")


def test_compare_toggles_best_final_and_test_with_the_leader_marked(page, client, finished):  # noqa: F811
    jobs = [trial["jobs"][0] for trial in finished["trials"]]
    page.goto(f"/compare?ids={','.join(job['id'] for job in jobs)}")
    expect(page.locator("#differences tbody tr")).to_have_count(len(jobs))
    labels = page.locator("#differences tbody tr td:nth-child(2)").all_inner_texts()
    for label, trial in zip(labels, finished["trials"], strict=True):
        assert label.startswith(f"optimizer.lr={trial['params']['optimizer.lr']:g}"), labels
    values = page.locator("#values")
    expect(values).to_have_attribute("data-mode", "best")
    summaries = {job["id"]: client.get(f"/v1/jobs/{job['id']}").json()["summary"] for job in jobs}
    lowest = min(summaries, key=lambda i: summaries[i]["best"]["val_loss"]["value"])
    highest = max(summaries, key=lambda i: summaries[i]["best"]["val_accuracy"]["value"])
    expect(values.locator(f'tr[data-job-id="{lowest}"] td[data-metric="val_loss"]')
           ).to_have_class(re.compile("leader"))
    expect(values.locator(f'tr[data-job-id="{highest}"] td[data-metric="val_accuracy"]')
           ).to_have_class(re.compile("leader"))

    page.click('#value-mode button[data-mode="final"]')
    expect(values).to_have_attribute("data-mode", "final")
    expect(values.locator("thead")).to_contain_text("final val_loss")
    last = min(summaries, key=lambda i: summaries[i]["latest"]["val_loss"])
    expect(values.locator(f'tr[data-job-id="{last}"] td[data-metric="val_loss"]')
           ).to_have_class(re.compile("leader"))
    assert "values=final" in page.url

    page.click('#value-mode button[data-mode="test"]')
    expect(values).to_have_attribute("data-mode", "test")
    if not any(summary.get("test") for summary in summaries.values()):
        expect(values.locator("caption")).to_contain_text("No test values")
    screenshot(page, "compare-values")


def test_the_sweep_pages_ask_for_a_key_first(auth_api_url):
    """With keys on, the sweep pages are a redirect to sign in, as every page is."""
    with httpx.Client(base_url=auth_api_url) as anonymous:
        for path in ("/sweeps", f"/sweeps/{uuid.uuid4()}"):
            response = anonymous.get(path)
            assert response.status_code == 303, (path, response.status_code)
            assert response.headers["location"] == f"/signin?next={quote(path, safe='')}"
