"""The dashboard's sign-in: GET /signin shows a form to paste an API key into; POST /signin
checks the key and keeps it in a cookie (HttpOnly: the pages' scripts never see it;
SameSite=Strict: another site's page cannot make the browser send it; Secure over https), which
the API accepts as it accepts `Authorization: Bearer` (api/auth.py). POST /signout forgets it.
"""

from __future__ import annotations

import html
from string import Template
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.auth import COOKIE, identify
from api.routes.dashboard import PAGE_HEADERS, render_page

router = APIRouter(include_in_schema=False)

# Signed in for a working day; then the form asks for the key again.
COOKIE_MAX_AGE_S = 12 * 3600
MAX_FORM_BYTES = 4096


def safe_next(target: str | None) -> str:
    """A path on this server to go back to; anything else (another host, `//host`, a
    scheme) is `/`, so that the form cannot be used to send someone elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


def signin_page(request: Request, target: str, message: str = "", status_code: int = 200
                ) -> HTMLResponse:
    body = Template(render_page("signin", False)).safe_substitute(
        next=html.escape(target, quote=True), message=html.escape(message))
    return HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)


def check_same_origin(request: Request) -> None:
    """A form posted from another site's page is refused (signing someone in with the other
    site's key). Browsers send Origin with every POST; a client without one is not a page."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        here = f"{request.url.scheme}://{request.url.netloc}"
        if origin != here:
            raise HTTPException(403, f"header.origin: {origin} is not this server ({here}); "
                                "sign in from this server's own /signin page")


@router.get("/signin", response_model=None)
def signin_form(request: Request) -> HTMLResponse | RedirectResponse:
    target = safe_next(request.query_params.get("next"))
    if not request.app.state.settings.auth:  # nothing to sign in to
        return RedirectResponse(target, status_code=303)
    return signin_page(request, target)


@router.post("/signin", response_model=None)
async def signin(request: Request) -> HTMLResponse | RedirectResponse:
    check_same_origin(request)
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "the sign-in form is larger than a key")
    form = parse_qs(body.decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    target = safe_next((form.get("next") or ["/"])[0])
    if not request.app.state.settings.auth:
        return RedirectResponse(target, status_code=303)
    if not key:
        return signin_page(request, target, "Paste an API key (it starts with td_).", 422)
    if await identify(request, key) is None:
        return signin_page(request, target, "That API key is not valid or has been revoked.",
                           401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, key, max_age=COOKIE_MAX_AGE_S, path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/signout")
def signout(request: Request) -> RedirectResponse:
    check_same_origin(request)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response
