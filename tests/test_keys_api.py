"""/v1/keys and /v1/usage on a real API process that asks for keys: a key makes narrower
keys for its own owner, sees and revokes its owner's keys only, and a key that expires is
refused from then on."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.conftest import make_api_key


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})


def _owner() -> str:
    return f"team-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def keys(auth_api_url, settings):
    return lambda scopes, owner=None: make_api_key(settings, scopes, owner=owner or _owner())


def test_a_key_makes_a_narrower_key_for_its_owner_and_lists_its_owners_keys(auth_api_url,
                                                                             keys):
    owner = _owner()
    with _client(auth_api_url, keys("read,submit", owner)) as mine:
        made = mine.post("/v1/keys", json={"name": f"dash-{owner}", "scopes": ["read"]})
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["owner"] == owner and body["scopes"] == ["read"]
        assert body["token"].startswith("td_") and body["state"] == "active"
        listed = mine.get("/v1/keys").json()
        assert {k["owner"] for k in listed} == {owner} and len(listed) == 2
        assert all("token" not in k for k in listed)
    with _client(auth_api_url, body["token"]) as reader:
        assert reader.get("/v1/jobs").status_code == 200
        refused = reader.post("/v1/keys", json={"name": f"x-{owner}", "scopes": ["read"]})
        assert refused.status_code == 403  # a read key makes nothing
    with _client(auth_api_url, keys("admin")) as admin:
        everyone = {k["owner"] for k in admin.get("/v1/keys").json()}
        assert owner in everyone and len(everyone) > 1


def test_a_key_cannot_grant_what_it_lacks_nor_make_keys_for_another_owner(auth_api_url,
                                                                          keys):
    with _client(auth_api_url, keys("read,submit")) as mine:
        name = f"k-{uuid.uuid4().hex[:8]}"
        admin = mine.post("/v1/keys", json={"name": name, "scopes": ["read", "admin"]})
        assert admin.status_code == 403 and "admin" in admin.json()["detail"]
        other = mine.post("/v1/keys", json={"name": name, "scopes": ["read"], "owner": "ben"})
        assert other.status_code == 403 and other.json()["detail"].startswith("owner:")
        bad = mine.post("/v1/keys", json={"name": "no spaces", "scopes": ["read"]})
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "name"
        scope = mine.post("/v1/keys", json={"name": name, "scopes": ["write"]})
        assert scope.status_code == 422 and "scopes" in scope.json()["detail"][0]["field"]
        assert mine.post("/v1/keys", json={"name": name, "scopes": ["read"]}).status_code == 201
        again = mine.post("/v1/keys", json={"name": name, "scopes": ["read"]})
        assert again.status_code == 409 and again.json()["detail"][0]["field"] == "name"
    with _client(auth_api_url, keys("admin")) as admin:
        made = admin.post("/v1/keys", json={"name": f"k-{uuid.uuid4().hex[:8]}",
                                            "scopes": ["read"], "owner": "ben"})
        assert made.status_code == 201 and made.json()["owner"] == "ben"


def test_revoking_another_owners_key_is_404_and_ones_own_takes_effect_at_once(auth_api_url,
                                                                               keys):
    theirs_owner = _owner()
    with _client(auth_api_url, keys("read,submit", theirs_owner)) as them:
        theirs = them.get("/v1/keys").json()[0]["id"]
    owner = _owner()
    token = keys("read,submit", owner)
    with _client(auth_api_url, token) as mine:
        assert mine.delete(f"/v1/keys/{theirs}").status_code == 404
        assert mine.delete("/v1/keys/999999999").status_code == 404
        own = mine.get("/v1/keys").json()[0]["id"]
        gone = mine.delete(f"/v1/keys/{own}")
        assert gone.status_code == 200 and gone.json()["state"] == "revoked"
        assert mine.get("/v1/jobs").status_code == 401


def test_a_key_that_expires_is_refused_from_then_on(auth_api_url, keys):
    with _client(auth_api_url, keys("read,submit")) as mine:
        made = mine.post("/v1/keys", json={"name": f"ci-{uuid.uuid4().hex[:8]}",
                                           "scopes": ["read"], "expires_in_days": 2e-5})
        assert made.status_code == 201, made.text
        assert made.json()["expires_at"] is not None
        never = mine.post("/v1/keys", json={"name": f"ci-{uuid.uuid4().hex[:8]}",
                                            "scopes": ["read"], "expires_in_days": 0})
        assert never.status_code == 422
    with _client(auth_api_url, made.json()["token"]) as short:
        assert short.get("/v1/jobs").status_code == 200
        time.sleep(2.0)  # 2e-5 days is 1.7 s
        refused = short.get("/v1/jobs")
        assert refused.status_code == 401
    with _client(auth_api_url, keys("admin")) as admin:
        states = {k["id"]: k["state"] for k in admin.get("/v1/keys").json()}
        assert states[made.json()["id"]] == "expired"


def test_usage_names_the_owners_holdings_and_limits(auth_api_url, keys):
    with _client(auth_api_url, keys("read")) as mine:
        usage = mine.get("/v1/usage").json()
    assert usage["stored_bytes"] == 0 and usage["active_jobs"] == 0
    assert usage["max_stored_bytes"] > 0 and usage["max_active_jobs"] > 0


def test_the_python_client_makes_lists_and_revokes_keys(auth_api_url, keys):
    from traindock.client import Client
    from traindock.errors import TraindockError

    with Client(auth_api_url, api_key=keys("read,submit")) as td:
        made = td.create_key(f"svc-{uuid.uuid4().hex[:8]}", ["read"], expires_in_days=1)
        assert made.token and made.expires_at is not None and made.state == "active"
        assert made.id in [k.id for k in td.list_keys()]
        assert td.usage().active_jobs == 0
        with Client(auth_api_url, api_key=made.token) as reader:
            assert reader.usage().owner == made.owner
            assert td.revoke_key(made).state == "revoked"
            with pytest.raises(TraindockError):
                reader.usage()
