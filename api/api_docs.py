"""The interactive API reference at /docs: Swagger UI served from the `swagger_ui_bundle`
package under /docs/assets, so it works with no internet and loads nothing from elsewhere,
under a Content-Security-Policy that allows this server only. ReDoc is not served: it would
need its script from a CDN.

Swagger UI starts from a short inline script that FastAPI writes; the policy allows that one
script by its hash, and no other inline script.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"
# The Swagger UI file the validator badge would call is on the internet: never.
SWAGGER_PARAMETERS = {"validatorUrl": None}
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _html(openapi_url: str, title: str) -> str:
    return bytes(get_swagger_ui_html(
        openapi_url=openapi_url, title=title,
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        oauth2_redirect_url=None,
        swagger_ui_parameters=SWAGGER_PARAMETERS,
    ).body).decode()


def policy(html: str) -> str:
    """Scripts, styles, images and requests from this server only, plus the page's one inline
    script by its hash. Swagger UI sets element styles and draws icons as data: images, which
    stay on the page (no request leaves it)."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(html))
    return ("default-src 'self'; "
            f"script-src 'self' {hashes}; style-src 'self'; "
            "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@cache
def _page(openapi_url: str, title: str) -> tuple[str, str]:
    html = _html(openapi_url, title)
    return html, policy(html)


def install_docs(app: FastAPI) -> None:
    """Serve /docs and its assets; the app must be built with docs_url=None, redoc_url=None."""
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        html, csp = _page(app.openapi_url or "/openapi.json", f"{app.title} API")
        return HTMLResponse(html, headers={"Content-Security-Policy": csp,
                                           "Cache-Control": "no-cache"})
