"""The dashboard's pages: /, /jobs/{id}, /compare, /sweeps, /sweeps/{id}, /submit, /spec, and
their files under /static.
With TRAINDOCK_AUTH on, a page asked for without a valid key (the cookie that /signin sets)
is a redirect to /signin (api/routes/signin.py); the files under /static are open.

Each page is its body (dashboard/pages/) inside the one layout (dashboard/layout.html), which
holds the head and the navigation; the page's script reads the v1 API. Every file is served
from the package, so the dashboard works with no internet (uPlot is vendored under
static/vendor/).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from api.auth import LOCAL, Principal, identify, presented_token
from api.deps import SessionDep
from core.repo.job_ids import jobs_with_id_prefix

router = APIRouter(include_in_schema=False)

DASHBOARD_DIR = (Path(__file__).resolve().parent.parent / "dashboard").resolve()
STATIC_DIR = DASHBOARD_DIR / "static"

# page -> (title, its script under static/js/)
PAGES = {
    "index": ("Jobs", "list"),
    "job": ("Job", "job"),
    "compare": ("Compare", "compare"),
    "sweeps": ("Sweeps", "sweeps"),
    "sweep": ("Sweep", "sweep"),
    "submit": ("Submit a job", "submit"),
    "spec": ("Job spec reference", "spec"),
    "signin": ("Sign in", "signin"),
}
SIGNOUT_FORM = ('  <form class="signout" method="post" action="/signout"><button id="signout" '
                'type="submit">Sign out</button></form>\n')

# Explicit, because mimetypes reads the host's tables and some map .js to text/plain, which
# browsers refuse for module scripts.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}

# Pages load scripts and styles from this server only and talk to this server only.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "Cache-Control": "no-cache",
}


@cache
def render_page(name: str, signout: bool = False) -> str:
    """The page's body in the layout (with a sign-out button when keys are asked for); read
    once per process."""
    title, script = PAGES[name]
    layout = Template((DASHBOARD_DIR / "layout.html").read_text())
    body = (DASHBOARD_DIR / "pages" / f"{name}.html").read_text()
    return layout.substitute(title=title, script=script, main=body,
                             signout=SIGNOUT_FORM if signout else "")


def page(request: Request, name: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(render_page(name, request.app.state.settings.auth),
                        status_code=status_code, headers=PAGE_HEADERS)


async def viewer(request: Request) -> Principal | None:
    """Who is looking at a page: the cookie's (or Bearer header's) key, None without one."""
    if not request.app.state.settings.auth:
        return LOCAL
    try:
        token = presented_token(request)
    except HTTPException:
        return None
    return await identify(request, token)


ViewerDep = Annotated[Principal | None, Depends(viewer)]


def sign_in_first(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(here, safe='')}", status_code=303)


@router.get("/", response_model=None)
def job_list_page(request: Request, who: ViewerDep) -> HTMLResponse | RedirectResponse:
    return page(request, "index") if who else sign_in_first(request)


def _full_id(session: Session, ref: str, who: Principal) -> str:
    """The full id of the one job (of the viewer's) whose id starts with `ref` (as `ls` prints
    it), else `ref` unchanged: the page's API call then says what is wrong (none, several,
    not an id)."""
    if len(ref) >= 36:
        return ref
    found = jobs_with_id_prefix(session, ref.strip(), limit=2, owner=who.owner_filter)
    return str(found[0].id) if len(found) == 1 else ref


@router.get("/jobs/{job_id}", response_model=None)
def job_page(request: Request, job_id: str, session: SessionDep, who: ViewerDep
             ) -> HTMLResponse | RedirectResponse:
    # The id is checked by the page's own API calls, which show "no job with id ..." on a 404.
    if who is None:
        return sign_in_first(request)
    full = _full_id(session, job_id, who)
    if full != job_id:
        return RedirectResponse(f"/jobs/{full}", status_code=302)
    return page(request, "job")


@router.get("/compare", response_model=None)
def compare_page(request: Request, session: SessionDep, who: ViewerDep
                 ) -> HTMLResponse | RedirectResponse:
    """Ids given as prefixes are replaced by the full ids they start, then the page loads."""
    if who is None:
        return sign_in_first(request)
    ids = request.query_params.get("ids", "")
    full = ",".join(_full_id(session, ref, who) for ref in ids.split(",")) if ids else ids
    if full != ids:
        query = urlencode({**request.query_params, "ids": full}, safe=",")
        return RedirectResponse(f"/compare?{query}", status_code=302)
    return page(request, "compare")


@router.get("/sweeps", response_model=None)
def sweep_list_page(request: Request, who: ViewerDep) -> HTMLResponse | RedirectResponse:
    return page(request, "sweeps") if who else sign_in_first(request)


@router.get("/sweeps/{sweep_id}", response_model=None)
def sweep_page(request: Request, sweep_id: str, who: ViewerDep
               ) -> HTMLResponse | RedirectResponse:
    # As for a job, the page's own API call says "no sweep with id ..." on a 404.
    return page(request, "sweep") if who else sign_in_first(request)


@router.get("/submit", response_model=None)
def submit_page(request: Request, who: ViewerDep) -> HTMLResponse | RedirectResponse:
    return page(request, "submit") if who else sign_in_first(request)


@router.get("/spec", response_model=None)
def spec_page(request: Request, who: ViewerDep) -> HTMLResponse | RedirectResponse:
    # Served, not linked to docs/: a wheel has no docs folder.
    return page(request, "spec") if who else sign_in_first(request)


@router.get("/static/{path:path}")
def static_file(path: str) -> FileResponse:
    """A file from the dashboard's static folder; nothing outside it, whatever the path says."""
    file = (STATIC_DIR / path).resolve()
    media_type = MEDIA_TYPES.get(file.suffix)
    if not file.is_relative_to(STATIC_DIR) or not file.is_file() or media_type is None:
        raise HTTPException(404, f"no dashboard file {path!r}")
    return FileResponse(file, media_type=media_type, headers={"Cache-Control": "no-cache"})
