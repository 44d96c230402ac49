"""Who is calling: the API key (`Authorization: Bearer <token>`, or the dashboard's cookie),
its owner and its scopes. Every /v1 router gets `authenticate` as a dependency (api/main.py):
no key or a bad or revoked one is a 401, a key without the method's scope a 403. With
TRAINDOCK_AUTH=off every caller is an admin of owner `local` (docs/security.md)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from api.connections import async_connection
from core.api_keys import LOCAL_OWNER, SCOPES, same_hash, token_hash
from core.repo.api_keys import fetch_active_key

COOKIE = "traindock_key"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CHALLENGE = {"WWW-Authenticate": "Bearer"}


class AuthErrorOut(BaseModel):
    detail: str


AUTH_RESPONSES: dict[int | str, dict] = {
    401: {"model": AuthErrorOut, "description": "no API key, or one that is not valid or "
          "revoked (with `WWW-Authenticate: Bearer`)"},
    403: {"model": AuthErrorOut, "description": "the API key lacks the scope the method needs"},
    429: {"model": AuthErrorOut, "description": "the API key made too many requests a second "
          "(TRAINDOCK_RATE_LIMIT_PER_S); retry after Retry-After seconds"},
}
# Only for the OpenAPI schema's security scheme (the Authorize button of /docs): the header
# itself is read by presented_token, which also takes the dashboard's cookie.
BEARER = HTTPBearer(auto_error=False, description="an API key: `traindock keys create`")


@dataclass(frozen=True)
class Principal:
    owner: str
    scopes: frozenset[str]
    key_name: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def owner_filter(self) -> str | None:
        """The owner whose rows this caller sees; None: every owner's (admin)."""
        return None if self.is_admin else self.owner

    def may_see(self, owner: str) -> bool:
        return self.is_admin or owner == self.owner


LOCAL = Principal(LOCAL_OWNER, frozenset(SCOPES))
NOBODY = Principal("", frozenset())


def presented_token(request: Request) -> str | None:
    """The Bearer token, else the dashboard's cookie, else None."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise HTTPException(401, "header.authorization: send 'Authorization: Bearer "
                                "<API key>'; other schemes are not accepted", headers=CHALLENGE)
        return value.strip()
    return request.cookies.get(COOKIE) or None


async def identify(request: Request, token: str | None) -> Principal | None:
    """The key's principal, or None when `token` is no key's or a revoked one's."""
    if not token:
        return None
    async with async_connection(request) as conn:
        row = await fetch_active_key(conn, token_hash(token))
    if row is None or not same_hash(row.token_hash, token):
        return None
    return Principal(row.owner, frozenset(row.scopes), row.name)


# POSTs that change nothing: a prediction sends its inputs in a body, but only reads the job.
READ_POST_SUFFIXES = ("/predict",)


def needed_scope(method: str, path: str = "") -> str:
    if method in READ_METHODS:
        return "read"
    if method == "POST" and path.rstrip("/").endswith(READ_POST_SUFFIXES):
        return "read"
    return "submit"


async def authenticate(
    request: Request,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None,
) -> Principal:
    """The caller, once per request (kept on request.state for the code that runs outside
    FastAPI's dependencies: error handlers, streaming routes)."""
    known = getattr(request.state, "principal", None)
    if known is not None:
        return known
    if not request.app.state.settings.auth:
        principal = LOCAL
    else:
        token = presented_token(request)
        if not token:
            raise HTTPException(401, "no API key: send 'Authorization: Bearer <API key>' "
                                "(`traindock keys create` makes one; `traindock up` prints "
                                "where its admin key is)", headers=CHALLENGE)
        found = await identify(request, token)
        if found is None:
            raise HTTPException(401, "the API key is not valid or has been revoked; send a "
                                "current one (`traindock keys list` shows them)",
                                headers=CHALLENGE)
        principal = found
    scope = needed_scope(request.method, request.url.path)
    if scope not in principal.scopes and not principal.is_admin:
        raise HTTPException(403, f"this API key lacks the {scope!r} scope that "
                            f"{request.method} needs; use a key created with --scopes "
                            f"{scope} (it has: {', '.join(sorted(principal.scopes))})")
    _within_rate(request, principal)
    request.state.principal = principal
    return principal


def _within_rate(request: Request, principal: Principal) -> None:
    """A key past TRAINDOCK_RATE_LIMIT_PER_S gets a 429 (api/rate_limit.py); with keys off,
    on loopback, there is no key to count."""
    settings = request.app.state.settings
    if not settings.auth or not settings.rate_limit_per_s:
        return
    wait = request.app.state.rate_limiter.take(f"{principal.owner}/{principal.key_name}",
                                               time.monotonic())
    if wait > 0:
        raise HTTPException(
            429, f"this API key made more than {settings.rate_limit_per_s:g} requests a second "
            f"(beyond a burst of {settings.rate_limit_burst}); retry after {wait:.1f} s "
            "(TRAINDOCK_RATE_LIMIT_PER_S)", headers={"Retry-After": str(max(1, math.ceil(wait)))})


def request_principal(request: Request) -> Principal:
    """The caller that `authenticate` found; NOBODY (sees nothing) when it did not run."""
    return getattr(request.state, "principal", None) or NOBODY


PrincipalDep = Annotated[Principal, Depends(authenticate)]
