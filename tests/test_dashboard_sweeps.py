"""The sweep pages in Chromium against the real API, worker and database: a 3-point grid of
tiny digits trials runs through the service while its page polls, then the page shows a row
per trial with the best one marked, sorts by a clicked column, draws the parallel-coordinates
canvas, and the trials' own pages and the job list link back to the sweep. (Browser and page
fixtures: tests/test_dashboard.py.)"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import httpx

from tests.test_dashboard import (  # noqa: F401 - browser and page are fixtures
    browser,
    expect,
    page,
    screenshot,
)
from tests.test_sweeps import tiny_base, wait_for_sweep

LRS = [0.03, 0.001, 0.01]  # listed out of order, so that trial order is not lr order


def painted_pixels(tab, selector: str) -> int:
    """How many pixels of the canvas are not blank (alpha above zero)."""
    return tab.eval_on_selector(selector, """canvas => {
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
        return painted;
    }""")


def test_the_sweep_page_marks_the_best_trial_sorts_and_draws(page, client, worker):  # noqa: F811
    # Two epochs (30 steps): two evaluations, so each trial's curve is a line.
    body = {"name": f"dash-grid-{uuid.uuid4().hex[:6]}", "method": "grid", "parallelism": 1,
            "base": tiny_base(epochs=2, max_steps=30),
            "parameters": {"optimizer.lr": {"values": LRS}},
            "objective": {"metric": "val_loss", "at": "final"}}
    created = client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    # Opened while the first trial is queued: the page polls until the sweep has ended.
    page.goto(f"/sweeps/{sweep_id}")
    expect(page.locator("#trials tbody tr")).not_to_have_count(3)
    expect(page.locator("#sweep-head")).to_have_attribute("data-state", "succeeded",
                                                          timeout=90_000)
    sweep = wait_for_sweep(client, sweep_id, {"succeeded", "failed", "cancelled"}, timeout=10)
    best = sweep["best"]["trial_number"]

    page.goto("/sweeps")
    row = page.locator(f'tr[data-sweep-id="{sweep_id}"]')
    expect(row).to_contain_text(body["name"])
    expect(row).to_contain_text("3/3")
    row.locator("a").click()
    expect(page).to_have_url(f"{page.url.split('/sweeps')[0]}/sweeps/{sweep_id}")

    rows = page.locator("#trials tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#trials tbody tr.best")).to_have_count(1)
    expect(page.locator("#trials tbody tr.best")).to_have_attribute("data-trial", str(best))
    expect(page.locator("#trials thead th")).to_contain_text(["optimizer.lr", "final val_loss"],
                                                            use_inner_text=True)

    def trial_order() -> list[int]:
        return [int(n) for n in rows.evaluate_all("rows => rows.map(r => r.dataset.trial)")]

    assert trial_order() == [0, 1, 2]
    by_lr = [n for _, n in sorted((trial["params"]["optimizer.lr"], trial["number"])
                                  for trial in sweep["trials"])]
    page.click('#trials th[data-key="param:optimizer.lr"]')
    assert trial_order() == by_lr
    page.click('#trials th[data-key="param:optimizer.lr"]')
    assert trial_order() == by_lr[::-1]
    page.click('#trials th[data-key="final"]')
    assert trial_order()[0] == best  # lowest final val_loss first: the objective's best

    canvas = page.locator("#parallel")
    expect(canvas).to_have_attribute("data-lines", "3")
    assert painted_pixels(page, "#parallel") > 2000
    expect(page.locator("#chart-objective")).to_have_attribute("data-series", "2")
    expect(page.locator("#chart-top")).to_have_attribute("data-series", "3")
    expect(page.locator("#best")).to_contain_text(f"trial {best}")
    screenshot(page, "sweep")

    trial_job = sweep["trials"][best]["jobs"][0]["id"]
    page.goto(f"/jobs/{trial_job}")
    link = page.locator("#job-sweep a")
    expect(page.locator("#job-sweep")).to_have_text(f"trial {best} of sweep {sweep_id[:8]}")
    expect(link).to_have_attribute("href", f"/sweeps/{sweep_id}")

    page.goto("/")
    tag = page.locator(f'tr[data-job-id="{trial_job}"] .sweep-tag')
    expect(tag).to_have_text(f"trial {best} of sweep {body['name']}")
    expect(tag.locator("a")).to_have_attribute("href", f"/sweeps/{sweep_id}")



def test_the_sweep_pages_ask_for_a_key_first(auth_api_url):
    """With keys on, the sweep pages are a redirect to sign in, as every page is."""
    with httpx.Client(base_url=auth_api_url) as anonymous:
        for path in ("/sweeps", f"/sweeps/{uuid.uuid4()}"):
            response = anonymous.get(path)
            assert response.status_code == 303, (path, response.status_code)
            assert response.headers["location"] == f"/signin?next={quote(path, safe='')}"
