"""Browser defences over real HTTP against the real API (api/browser_defences.py): a page of
another site cannot change anything, a DNS-rebinding name gets no answer, every answer says
nosniff, and /docs loads Swagger UI from this server only, under its CSP, in real Chromium."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import load_example, start_api

CHROMIUM = Path("/usr/bin/chromium")
SPEC = load_example("digits-mlp")


def validate(client: httpx.Client, **headers: str) -> httpx.Response:
    return client.post("/v1/jobs/validate", json=SPEC, headers=headers)


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"},  # another port
    {"Origin": "https://evil.example"},  # a browser that sends no Sec-Fetch-Site
    {"Origin": "null"},  # a sandboxed frame or a file:// page
])
def test_a_state_changing_request_from_another_site_is_refused(client, headers) -> None:
    response = validate(client, **headers)
    assert response.status_code == 403, response.text
    assert "refused" in response.json()["detail"], response.text
    job = client.post("/v1/jobs/00000000-0000-0000-0000-000000000000/cancel", headers=headers)
    assert job.status_code == 403, job.text
    upload = client.post("/v1/datasets", files={"file": ("x.csv", b"a,b\n1,2\n")},
                         data={"name": "from-a-page"}, headers=headers)
    assert upload.status_code == 403, upload.text


def test_the_dashboard_and_clients_that_are_not_browsers_pass(client, api_url) -> None:
    assert validate(client, **{"Sec-Fetch-Site": "same-origin", "Origin": api_url}
                    ).status_code == 200
    assert validate(client, Origin=api_url).status_code == 200  # same origin, older browser
    assert validate(client, **{"Sec-Fetch-Site": "none"}).status_code == 200  # typed by the user
    assert validate(client).status_code == 200  # curl, the CLI: neither header
    # Reading is not refused: a cross-site page cannot read the answer (no CORS headers).
    assert client.get("/v1/jobs", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_a_host_name_not_configured_is_refused(client) -> None:
    response = client.get("/v1/jobs", headers={"Host": "rebind.evil.example"})
    assert response.status_code == 421, response.text
    assert "TRAINDOCK_ALLOWED_HOSTS" in response.json()["detail"]
    for host in ("localhost", "127.0.0.1:8000", "[::1]:8000"):
        assert client.get("/v1/jobs", headers={"Host": host}).status_code == 200, host
    # Liveness probes reach a container by its address.
    assert client.get("/healthz", headers={"Host": "10.1.2.3:8000"}).status_code == 200


def test_allowed_hosts_setting_names_them(service_env, tmp_path) -> None:
    service, url = start_api(service_env, tmp_path,
                             TRAINDOCK_ALLOWED_HOSTS="traindock.example.org, 127.0.0.1")
    try:
        named = httpx.get(f"{url}/v1/jobs", headers={"Host": "traindock.example.org"}, timeout=30)
        other = httpx.get(f"{url}/v1/jobs", headers={"Host": "localhost"}, timeout=30)
    finally:
        service.stop()
    assert named.status_code == 200, named.text
    assert other.status_code == 421, other.text


@pytest.mark.parametrize("path", ["/v1/jobs", "/healthz", "/", "/static/css/app.css", "/docs",
                                  "/docs/assets/swagger-ui.css", "/openapi.json",
                                  "/v1/jobs/not-an-id", "/no-such-page"])
def test_every_answer_says_nosniff(client, path) -> None:
    response = client.get(path)
    assert response.headers.get("x-content-type-options") == "nosniff", (path, response.status_code)
    assert response.headers.get_list("x-content-type-options") == ["nosniff"], path


def test_refusals_say_nosniff_too(client) -> None:
    response = validate(client, Origin="https://evil.example")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_dashboard_keeps_its_csp(client) -> None:
    csp = client.get("/").headers["content-security-policy"]
    assert "script-src 'self';" in csp and "default-src 'self'" in csp, csp


def test_docs_are_served_from_here_under_a_self_only_csp(client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    sources = " ".join(part.split(" ", 1)[1] for part in csp.split("; ") if " " in part)
    assert "http" not in sources and "*" not in sources, csp
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";")[0], csp
    assert "cdn" not in response.text and "https://" not in response.text, response.text
    assert client.get("/redoc").status_code == 404  # ReDoc would need a CDN: not served


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium")
def test_docs_render_in_chromium_without_leaving_the_origin(api_url) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]'")
    requests: list[str] = []
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(f"{api_url}/docs")
            # Swagger UI has fetched /openapi.json and drawn an operation from it.
            sync_api.expect(page.locator(".opblock-summary-path").first).to_be_visible(
                timeout=20_000)
            sync_api.expect(page.locator(".info .title")).to_contain_text("traindock")
            count = page.locator(".opblock").count()
        finally:
            browser.close()
    own = urlsplit(api_url).netloc
    foreign = [url for url in requests
               if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).netloc != own]
    assert not foreign, foreign
    assert f"{api_url}/openapi.json" in requests
    assert count >= 15, count
    assert not problems, problems  # a CSP violation is logged as a console error
