"""The job page's Logs panel in Chromium, against the real API and worker: it follows the
running attempt's log, moves to the next attempt when the job is retried, and shows an older
attempt's log from its selector. (Browser, page and job helpers: tests/test_dashboard.py.)"""

from __future__ import annotations

from tests.conftest import training_children
from tests.test_dashboard import (  # noqa: F401 - browser and page are fixtures
    browser,
    cancel_unless_final,
    digits_mlp,
    expect,
    page,
    screenshot,
    submit,
)

READY = "ready to train after"
SLOW_MS = 150_000  # a training process's start-up, on a machine shared with other tests


def test_the_logs_panel_follows_each_attempt_and_shows_older_ones(
    page, client, worker,  # noqa: F811 - page is the fixture imported above
):
    job_id = submit(client, digits_mlp("dashboard-logs",
                                       training={"epochs": 5000, "batch_size": 32}))
    try:
        page.goto(f"/jobs/{job_id}")
        log, status = page.locator("#log"), page.locator("#log-status")
        picker = page.locator("#log-attempt")
        # The page was open before the training process wrote this line.
        expect(log).to_contain_text(READY, timeout=SLOW_MS)
        expect(status).to_have_text("attempt 1 · live")
        expect(picker).to_be_hidden()

        [child] = training_children(job_id, worker.log())
        child.kill()  # as the OOM killer would: the worker retries the job
        expect(status).to_have_text("attempt 2 · live", timeout=SLOW_MS)
        expect(log).to_contain_text(READY, timeout=SLOW_MS)
        expect(picker).to_be_visible()
        expect(picker).to_have_value("2")
        screenshot(page, "job-logs")

        picker.select_option("1")
        expect(status).to_have_text("attempt 1 · ended")
        first = client.get(f"/v1/jobs/{job_id}/logs", params={"attempt": 1}).text
        assert READY in first
        assert log.text_content() == first
    finally:
        cancel_unless_final(client, job_id)
