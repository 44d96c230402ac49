"""The job page's "Try it" panel in Chromium: on a finished digits job, drawing a digit on the
canvas with the mouse sends the drawing, scaled to 8x8 in digits' 0..16 range, to
POST /v1/jobs/{id}/predict and shows one probability bar per class. (Browser, page and job
helpers: tests/test_dashboard.py.)"""

from __future__ import annotations

from tests.conftest import wait_for_state
from tests.test_dashboard import (  # noqa: F401 - browser and page are fixtures
    browser,
    digits_mlp,
    expect,
    page,
    screenshot,
    submit,
)


def test_drawing_a_digit_shows_probability_bars(page, client, worker):  # noqa: F811
    job_id = submit(client, digits_mlp("dashboard-try-it", training={"epochs": 15}))
    page.goto(f"/jobs/{job_id}")
    panel = page.locator("#try-it")
    expect(panel).to_be_hidden()  # not before the job has finished
    assert wait_for_state(client, job_id, {"succeeded", "failed"}, 180)["state"] == "succeeded"
    expect(panel).to_be_visible(timeout=20_000)
    canvas = page.locator("#try-canvas")
    canvas.scroll_into_view_if_needed()  # the mouse draws at viewport coordinates
    box = canvas.bounding_box()
    assert box is not None
    # A "1": one vertical stroke down the middle, drawn with the mouse.
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x, box["y"] + box["height"] * (0.15 + 0.07 * i))
    page.mouse.up()

    bars = page.locator("#try-it-bars .try-bar")
    expect(bars).to_have_count(10, timeout=20_000)
    expect(page.locator("#try-it-bars .try-value")).to_contain_text("predicted: ")
    sent = page.evaluate("window.traindockTryIt.inputs")
    answer = page.evaluate("window.traindockTryIt.answer")
    [row] = sent
    assert len(row) == 64 and all(0 <= v <= 16 for v in row)
    columns = [sum(row[r * 8 + c] for r in range(8)) for c in range(8)]
    assert max(columns) == max(columns[3:5]) and columns[0] == columns[7] == 0  # ink mid
    prediction = answer["predictions"][0]
    assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-4
    chosen = page.locator("#try-it-bars .try-bar.chosen")
    expect(chosen).to_have_attribute("data-cls", prediction["class"])
    screenshot(page, "try-it")

    # The same drawing sent by hand gets the same answer: the panel adds nothing of its own.
    again = client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": sent}).json()
    assert again["predictions"] == answer["predictions"]

    page.locator("#try-clear").click()
    expect(bars).to_have_count(0)
