"""The dashboard with API keys on, in Chromium: a page asks for a key first; a wrong key is
refused; the right one sets an HttpOnly, SameSite=Strict cookie that the pages' own fetches
and event streams then carry; the pages show that owner's jobs only; signing out asks again.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import load_example, make_api_key
from tests.test_dashboard import CHROMIUM, CHROMIUM_ARGS, sync_api

expect = sync_api.expect

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's Chromium: apt-get install -y chromium"
)


@pytest.fixture(scope="module")
def chromium() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _submit(url: str, token: str, name: str) -> str:
    spec = load_example("digits-mlp") | {"name": name}
    with httpx.Client(base_url=url, timeout=30,
                      headers={"authorization": f"Bearer {token}"}) as http:
        created = http.post("/v1/jobs", json=spec)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        http.post(f"/v1/jobs/{job_id}/cancel")  # ends at once: the page has a final job
        return job_id


def test_sign_in_shows_ones_own_jobs_and_sign_out_asks_again(chromium, auth_api_url, settings):
    tag = uuid.uuid4().hex[:6]
    alice = make_api_key(settings, "read,submit", f"alice-{tag}")
    bob = make_api_key(settings, "read,submit", f"bob-{tag}")
    mine = _submit(auth_api_url, alice, f"alices-{tag}")
    _submit(auth_api_url, bob, f"bobs-{tag}")

    context = chromium.new_context(base_url=auth_api_url)
    foreign: list[str] = []
    errors: list[str] = []
    context.on("request", lambda r: foreign.append(r.url)
               if urlsplit(r.url).hostname not in (None, "127.0.0.1") else None)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"/jobs/{mine}")
        assert urlsplit(page.url).path == "/signin"  # asked for a key first
        page.fill("#key", "td_not-a-key-at-all-000000000000")
        page.click("#signin")
        expect(page.locator("#signin-error")).to_contain_text("not valid")
        assert context.cookies() == []

        page.fill("#key", alice)
        page.click("#signin")
        page.wait_for_url(re.compile(rf"/jobs/{mine}$"))  # back where it was going
        expect(page.locator("#job-name")).to_have_text(f"alices-{tag}")
        expect(page.locator("#job-state .badge")).to_have_text("cancelled")
        [cookie] = context.cookies()
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == \
            ("traindock_key", True, "Strict")
        assert page.evaluate("document.cookie") == ""  # the pages' scripts never see the key

        page.goto("/")
        rows = page.locator("#job-rows")
        expect(rows).to_contain_text(f"alices-{tag}")
        expect(rows).not_to_contain_text(f"bobs-{tag}")

        page.click("#signout")
        page.wait_for_url(re.compile(r"/signin$"))
        assert context.cookies() == []
        page.goto("/")
        assert urlsplit(page.url).path == "/signin"
        page.screenshot(path=str(_artifact("dashboard-signin.png")))
    finally:
        context.close()
    assert not errors, errors
    assert not foreign, foreign


def _artifact(name: str):
    from tests.test_dashboard import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
