"""/v1/keys: API keys over HTTP, for a service that hands out its own narrower keys (a
read-only key for a dashboard, a key that expires for a CI run). `traindock keys` does the
same on the database, and makes the first key. A key that is not an admin's sees and revokes
its own owner's keys and makes keys for its owner with no scope it lacks itself; another
owner's key is a 404, as anything of another owner's is."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from api.auth import Principal, PrincipalDep
from api.deps import SessionDep
from api.key_schemas import KeyCreate, KeyCreated, KeyOut
from api.schemas import NOT_JSON, ValidationErrorOut
from core.api_keys import SCOPES
from core.repo.api_keys import ApiKeyProblem, create_key, is_usable, list_keys, revoke
from core.tables import ApiKey

router = APIRouter(prefix="/v1/keys", tags=["keys"])


def key_out(key: ApiKey) -> KeyOut:
    state = "revoked" if key.revoked_at else ("active" if is_usable(key) else "expired")
    return KeyOut(id=key.id, name=key.name, owner=key.owner, scopes=key.scopes,
                  created_at=key.created_at, last_used_at=key.last_used_at,
                  expires_at=key.expires_at, revoked_at=key.revoked_at, state=state)


@router.get("", response_model=list[KeyOut])
def list_api_keys(session: SessionDep, principal: PrincipalDep) -> list[KeyOut]:
    """The caller's owner's keys (an admin's: every key), oldest first; never their tokens."""
    return [key_out(k) for k in list_keys(session, principal.owner_filter)]


@router.post("", status_code=201, response_model=KeyCreated, responses={
    **NOT_JSON,
    403: {"description": "a scope the caller's key lacks, or another owner without admin"},
    409: {"model": ValidationErrorOut, "description": "a key with that name exists"}})
def create_api_key(body: KeyCreate, session: SessionDep, principal: PrincipalDep
                   ) -> KeyCreated:
    """Make a key; its token is in this answer only."""
    owner = body.owner or principal.owner
    _may_grant(principal, owner, body.scopes)
    scopes = [s for s in SCOPES if s in body.scopes]
    try:
        key, token = create_key(session, body.name, scopes, owner, body.expires_in_days)
    except ApiKeyProblem as exc:  # the name is taken (KeyCreate checked its form)
        raise HTTPException(409, [{"field": "name", "type": "conflict",
                                   "message": f"name: {exc}"}]) from None
    session.commit()
    return KeyCreated(**key_out(key).model_dump(), token=token)


@router.delete("/{key_id}", response_model=KeyOut, responses={
    404: {"description": "no such key among the caller's"}})
def revoke_api_key(key_id: int, session: SessionDep, principal: PrincipalDep) -> KeyOut:
    """Revoke a key at once (the caller's own too: its next request is a 401). Revoked keys
    stay listed; revoking one twice answers as the first time."""
    key = session.get(ApiKey, key_id)
    if key is None or not principal.may_see(key.owner):
        raise HTTPException(404, f"no API key with id {key_id}")
    key = revoke(session, key)
    session.commit()
    return key_out(key)


def _may_grant(principal: Principal, owner: str, scopes: list[str]) -> None:
    if principal.is_admin:
        return
    if owner != principal.owner:
        raise HTTPException(403, f"owner: this API key makes keys for owner "
                            f"{principal.owner!r} only; leave owner out, or use an admin key")
    lacking = sorted(set(scopes) - principal.scopes)
    if lacking:
        held = ", ".join(sorted(principal.scopes))
        raise HTTPException(403, f"scopes: this API key cannot grant "
                            f"{', '.join(lacking)}, which it lacks itself (it has: {held})")
