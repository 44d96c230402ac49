"""The submit page's link to the spec reference works on the running service: in Chromium, the
link from /submit opens /spec (200, served by the API, nothing fetched from elsewhere), which
lists JobSpec's fields and every layer type, read from the server's own schema."""

from __future__ import annotations

import re

import pytest

from tests.test_dashboard import browser, expect, page, screenshot  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(expect is None, reason="needs playwright")


def test_the_submit_page_links_to_a_spec_reference_that_opens(page, client) -> None:  # noqa: F811
    page.goto("/submit")
    link = page.get_by_role("link", name="spec reference")
    expect(link).to_have_attribute("href", "/spec")
    with page.expect_response(re.compile(r"/spec$")) as opened:
        link.click()
    assert opened.value.status == 200
    expect(page).to_have_url(re.compile(r"/spec$"))
    expect(page.locator("h1")).to_have_text("Job spec reference")
    job_spec = page.locator("section#JobSpec")
    for field in ("name", "dataset", "model", "loss", "optimizer", "schedule", "training"):
        expect(job_spec.locator("td > code", has_text=re.compile(f"^{field}$"))).to_have_count(1)
    # A section for every kind of layer the server accepts, linked from where it is used.
    layers = client.get("/openapi.json").json()["components"]["schemas"]["ModelSpec"]
    kinds = {ref["$ref"].rsplit("/", 1)[1]
             for ref in layers["properties"]["layers"]["items"]["oneOf"]}
    assert "LinearSpec" in kinds and len(kinds) > 10
    for kind in kinds:
        expect(page.locator(f"section#{kind}")).to_have_count(1)
    linear = page.locator("section#LinearSpec")
    expect(linear.locator("tr", has_text="out_features")).to_contain_text("required")
    screenshot(page, "spec", full_page=False)
    page.locator("section#ModelSpec a[href='#LinearSpec']").first.click()
    expect(page).to_have_url(re.compile(r"/spec#LinearSpec$"))
