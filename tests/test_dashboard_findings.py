"""The diagnosis at the top of the job page, in Chromium against the real API: it appears
when the running job's first finding is stored, changes as the findings change, and says
when the run is over; evidence is shown as text, never as HTML. The job is written straight
into the database, as tests/test_diagnosis_surfaces.py does. (Browser and page fixtures:
tests/test_dashboard.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.test_dashboard import (  # noqa: F401 - browser and page are fixtures
    browser,
    expect,
    page,
    screenshot,
)
from tests.test_diagnosis_surfaces import (  # noqa: F401 - db is a fixture
    DIVERGENCE,
    VANISHING,
    db,
    diagnosis,
    put_job,
    set_job,
)

HTML_EVIDENCE = "val_loss <b>2.30</b> <img src=x> at steps 100-400"


def test_the_job_page_shows_the_findings_at_the_top_as_they_change(page, db):  # noqa: F811
    job_id = put_job(db, "running", {"diagnosis": diagnosis(step=100)}, name="diagnosed-live",
                     attempt=0)
    try:
        page.goto(f"/jobs/{job_id}")
        expect(page.locator("#job-name")).to_have_text("diagnosed-live")
        box = page.locator("#job-findings")
        expect(box).to_be_hidden()  # nothing found yet: nothing said

        set_job(db, job_id, summary={"diagnosis": diagnosis(
            VANISHING | {"evidence": HTML_EVIDENCE}, step=200)})
        expect(box).to_be_visible(timeout=10_000)
        expect(box.locator(".findings-head")).to_have_text(
            "Diagnosis: 1 finding at step 200 (so far)")
        finding = box.locator('li.finding[data-name="vanishing_gradients"]')
        expect(finding.locator(".badge")).to_have_text("warning")
        expect(finding.locator(".finding-title")).to_contain_text("since step 120")
        expect(finding.locator(".evidence")).to_have_text(HTML_EVIDENCE)
        assert box.locator("b, img").count() == 0  # text, not markup
        expect(finding.locator(".action")).to_have_text([
            'set model.init to {"type":"he_normal"}: He initialisation keeps ReLU '
            "activations' variance through depth",
            "set optimizer.lr to 0.001: a smaller step while it recovers"])
        # Above the progress bar and the charts: the first thing under the title.
        head = page.locator("#job-head").bounding_box()
        assert box.bounding_box()["y"] < page.locator("#job-progress").bounding_box()["y"]
        assert head["y"] < box.bounding_box()["y"]

        set_job(db, job_id, state="failed", finished_at=datetime.now(UTC),
                error="diverged at step 410", lease_owner=None, lease_expires_at=None,
                summary={"diagnosis": diagnosis(VANISHING, DIVERGENCE, final=True, step=410)})
        expect(box.locator(".findings-head")).to_have_text(
            "Diagnosis: 2 findings at step 410 (final)", timeout=10_000)
        expect(box.locator("li.finding")).to_have_count(2)
        expect(box.locator('li.finding[data-name="divergence"] .badge')).to_have_text("error")
        expect(box.locator('li.finding[data-name="divergence"] .action')).to_have_count(0)
        expect(page.locator("#job-state .badge")).to_have_text("failed")
        screenshot(page, "job-findings", full_page=False)
    finally:
        set_job(db, job_id, state="cancelled", lease_owner=None, lease_expires_at=None)


def test_a_run_that_ended_with_nothing_found_says_so(page, db):  # noqa: F811
    job_id = put_job(db, "succeeded", {"diagnosis": diagnosis(final=True, step=1000)},
                     attempt=0)
    page.goto(f"/jobs/{job_id}")
    box = page.locator("#job-findings")
    expect(box).to_have_text("Diagnosis: nothing found (the run's steps through 1000 were read)")
    expect(box).to_have_attribute("data-findings", "0")
