"""API keys and owners over real HTTP, against an API with TRAINDOCK_AUTH=on: no key, a bad key
or a revoked key is a 401; a read-only key cannot write (403); every route that takes an id,
enumerated from the app's own routes so that a new one cannot be left out, answers another
owner's resource with a 404; lists show only one's own; an admin key sees everything."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import APIRoute

from core.settings import Settings
from tests.conftest import load_example, make_api_key

CSV = b"a,b,y\n" + b"".join(f"{i},{i % 7},{i % 2}\n".encode() for i in range(40))
CHALLENGE = ("www-authenticate", "Bearer")


def _walk(routes: list, prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(full path, route) of every route, into included routers (FastAPI 0.16x includes a
    router as an object of its own rather than copying its routes)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):
            context = getattr(route, "include_context", None)
            yield from _walk(route.original_router.routes,
                             prefix + (getattr(context, "prefix", "") or ""))


def _app_routes(settings: Settings) -> list[tuple[str, APIRoute]]:
    from api.main import create_app

    app = create_app(settings)
    try:
        return list(_walk(app.routes))
    finally:
        app.state.engine.dispose()


def create_schema_paths(settings: Settings) -> set[tuple[str, str]]:
    from api.main import create_app

    app = create_app(settings)
    try:
        return {(method.upper(), path) for path, ops in app.openapi()["paths"].items()
                if path.startswith("/v1") for method in ops}
    finally:
        app.state.engine.dispose()


@pytest.fixture(scope="module")
def v1_routes(settings: Settings) -> list[tuple[str, str]]:
    """(method, path) of every /v1 route the API serves."""
    routes = [(method, path) for path, r in _app_routes(settings) if path.startswith("/v1")
              for method in sorted(r.methods)]
    assert len(routes) > 15, routes
    # the same set as the schema documents: nothing hidden from this walk
    schema = create_schema_paths(settings)
    assert {(m, p) for m, p in routes} == schema
    return routes


class Owners:
    """Keys and resources: alice (read+submit) owns a job and a dataset; alice's read-only key;
    bob (read+submit), another owner; an admin."""

    def __init__(self, url: str, settings: Settings) -> None:
        tag = uuid.uuid4().hex[:6]
        self.url = url
        self.alice_owner = f"alice-{tag}"
        self.alice = make_api_key(settings, "read,submit", self.alice_owner)
        self.reader = make_api_key(settings, "read", self.alice_owner)
        self.bob = make_api_key(settings, "read,submit", f"bob-{tag}")
        self.admin = make_api_key(settings, "read,submit,admin", f"root-{tag}")
        self.dataset_name = f"shared-name-{tag}"
        with self.client(self.alice) as http:
            spec = load_example("digits-mlp") | {"name": f"alice-job-{tag}"}
            created = http.post("/v1/jobs", json=spec)
            assert created.status_code == 201, created.text
            self.job_id = created.json()["id"]
            assert created.json()["owner"] == self.alice_owner
            uploaded = http.post("/v1/datasets", files={"file": ("t.csv", CSV)},
                                 data={"name": self.dataset_name})
            assert uploaded.status_code == 201, uploaded.text
            self.dataset_id = uploaded.json()["id"]
            sweep = http.post("/v1/sweeps", json={
                "base": spec, "method": "grid", "parallelism": 1,
                "parameters": {"optimizer.lr": {"values": [0.01, 0.1]}}})
            assert sweep.status_code == 201, sweep.text
            self.sweep_id = sweep.json()["id"]
            # alice's read-only key: another owner may neither see nor revoke it
            self.key_id = str(next(k["id"] for k in http.get("/v1/keys").json()
                                   if k["scopes"] == ["read"]))

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        if token:
            headers["authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def path_for(self, path: str) -> str:
        """The route's path with alice's resources filled in."""
        values = {"job_id": self.job_id, "key": self.dataset_id, "checkpoint_id": "1",
                  "key_id": self.key_id, "sweep_id": self.sweep_id}

        def fill(match: re.Match) -> str:
            name = match.group(1).split(":")[0]
            assert name in values, f"a route parameter this test does not know: {path}"
            return values[name]

        return re.sub(r"\{([^}]+)\}", fill, path)


@pytest.fixture(scope="module")
def owners(auth_api_url: str, settings: Settings) -> Iterator[Owners]:
    found = Owners(auth_api_url, settings)
    yield found
    with found.client(found.alice) as http:
        http.post(f"/v1/jobs/{found.job_id}/cancel")
        http.post(f"/v1/sweeps/{found.sweep_id}/cancel")


def _status(http: httpx.Client, method: str, path: str) -> tuple[int, httpx.Headers, str]:
    """Status, headers and the start of the body; streamed, so that an event stream that would
    go on is not waited for."""
    with http.stream(method, path) as response:
        body = b""
        if response.status_code >= 400:
            body = response.read()
        return response.status_code, response.headers, body.decode(errors="replace")[:300]


def test_every_v1_route_without_a_key_is_a_401_with_a_bearer_challenge(owners, v1_routes):
    with owners.client() as http:
        for method, path in v1_routes:
            status, headers, body = _status(http, method, owners.path_for(path))
            assert status == 401, (method, path, status, body)
            assert headers.get(CHALLENGE[0]) == CHALLENGE[1], (method, path)
            assert "Authorization: Bearer" in body, body


def test_a_bad_key_a_revoked_key_and_another_scheme_are_401s(owners, settings):
    from sqlalchemy.orm import Session

    from core.db import make_engine
    from core.repo.api_keys import key_by_token, revoke_key

    doomed = make_api_key(settings, "read", owners.alice_owner)
    with owners.client(doomed) as http:
        assert http.get("/v1/jobs").status_code == 200
    engine = make_engine(settings, pool_size=1)
    try:
        with Session(engine) as session:
            revoke_key(session, key_by_token(session, doomed).name)
            session.commit()
    finally:
        engine.dispose()
    for client in (owners.client(doomed), owners.client("td_" + "x" * 43),
                   owners.client(authorization=f"Basic {owners.alice}")):
        with client as http:
            response = http.get(f"/v1/jobs/{owners.job_id}")
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"] == "Bearer"


def test_another_owners_resource_is_a_404_on_every_route_that_takes_an_id(owners, v1_routes):
    with_ids = [(m, p) for m, p in v1_routes if "{" in p]
    # jobs (GET, cancel, DELETE, metrics, checkpoints, download, events, logs...), datasets,
    # sweeps (GET, cancel, DELETE, promote)
    assert len(with_ids) >= 10, with_ids
    assert {p for _, p in with_ids if p.startswith("/v1/sweeps/")} == {
        "/v1/sweeps/{sweep_id}", "/v1/sweeps/{sweep_id}/cancel", "/v1/sweeps/{sweep_id}/promote"}
    with owners.client(owners.bob) as bob, owners.client(owners.alice) as alice:
        for method, path in with_ids:
            filled = owners.path_for(path)
            status, _, body = _status(bob, method, filled)
            assert status == 404, (method, path, status, body)
            if method != "GET":
                continue  # alice's own writes would change what the other checks see
            # The same request is not a 404 of the job or dataset for its owner.
            status, _, body = _status(alice, method, filled)
            assert status not in (401, 403), (method, path, status, body)
            assert not (status == 404 and ("no job" in body or "no dataset" in body
                                           or "no sweep" in body)), \
                (method, path, body)
    with owners.client(owners.alice) as alice:  # nothing bob did reached alice's job
        assert alice.get(f"/v1/jobs/{owners.job_id}").json()["state"] in ("queued", "running",
                                                                        "succeeded")


def test_a_job_id_prefix_of_another_owner_names_no_job(owners):
    with owners.client(owners.bob) as bob:
        response = bob.get(f"/v1/jobs/{owners.job_id[:8]}")
        assert response.status_code == 404, response.text
        assert bob.get("/v1/jobs", params={"id_prefix": owners.job_id[:8]}).json()["items"] == []
    with owners.client(owners.alice) as alice:
        response = alice.get(f"/v1/jobs/{owners.job_id[:8]}")
        assert response.status_code == 422 and owners.job_id in response.text


@pytest.mark.parametrize(("method", "path", "kind"), [
    ("POST", "/v1/jobs", "json"),
    ("POST", "/v1/jobs/{job_id}/cancel", None),
    ("DELETE", "/v1/jobs/{job_id}", None),
    ("POST", "/v1/datasets", "upload"),
    ("DELETE", "/v1/datasets/{key}", None),
])
def test_a_read_only_key_cannot_submit_cancel_upload_or_delete(owners, method, path, kind):
    extra: dict = {}
    if kind == "json":
        extra["json"] = load_example("digits-mlp")
    elif kind == "upload":
        extra.update(files={"file": ("t.csv", CSV)}, data={"name": "from-a-reader"})
    with owners.client(owners.reader) as http:
        response = http.request(method, owners.path_for(path), **extra)
        assert response.status_code == 403, response.text
        assert "'submit' scope" in response.json()["detail"], response.text
        # ...but it reads what its owner has
        assert http.get(f"/v1/jobs/{owners.job_id}").status_code == 200
        assert http.get(f"/v1/datasets/{owners.dataset_id}").status_code == 200


def test_lists_show_only_ones_own_and_an_admin_sees_all(owners):
    with owners.client(owners.bob) as bob:
        bob_job = bob.post("/v1/jobs", json=load_example("moons-bce")).json()["id"]
        # Dataset names are each owner's: bob may use the name alice uses.
        same_name = bob.post("/v1/datasets", files={"file": ("t.csv", CSV)},
                             data={"name": owners.dataset_name})
        assert same_name.status_code == 201, same_name.text
        bob_jobs = {j["id"] for j in bob.get("/v1/jobs", params={"limit": 500}).json()["items"]}
        bob_sets = {d.get("id") for d in bob.get("/v1/datasets").json()}
        by_name = bob.get(f"/v1/datasets/{owners.dataset_name}").json()
        bob_sweeps = {s["id"] for s in bob.get("/v1/sweeps").json()["items"]}
        bob.post(f"/v1/jobs/{bob_job}/cancel")
    assert bob_job in bob_jobs and owners.job_id not in bob_jobs
    assert same_name.json()["id"] in bob_sets and owners.dataset_id not in bob_sets
    assert by_name["id"] == same_name.json()["id"]  # his own, not alice's
    assert owners.sweep_id not in bob_sweeps
    with owners.client(owners.admin) as admin:
        every = {j["id"] for j in admin.get("/v1/jobs", params={"limit": 500}).json()["items"]}
        assert {bob_job, owners.job_id} <= every
        sets = {d.get("id") for d in admin.get("/v1/datasets").json()}
        assert owners.sweep_id in {s["id"] for s in admin.get("/v1/sweeps").json()["items"]}
        assert {owners.dataset_id, same_name.json()["id"]} <= sets
        job = admin.get(f"/v1/jobs/{owners.job_id}")
        assert job.status_code == 200 and job.json()["owner"] == owners.alice_owner
        assert admin.get(f"/v1/jobs/{owners.job_id}/metrics").status_code == 200


def test_an_idempotency_key_is_each_owners_own(owners):
    key = f"idem-{uuid.uuid4().hex}"
    spec = load_example("moons-bce")
    ids = []
    for token in (owners.alice, owners.bob, owners.alice):
        with owners.client(token, **{"idempotency-key": key}) as http:
            response = http.post("/v1/jobs", json=spec)
            assert response.status_code in (200, 201), response.text
            ids.append(response.json()["id"])
            http.post(f"/v1/jobs/{ids[-1]}/cancel")
    assert ids[0] != ids[1] and ids[0] == ids[2]


def test_the_dashboard_cookie_is_a_key_too(owners):
    with owners.client(cookie=f"traindock_key={owners.alice}") as http:
        assert http.get(f"/v1/jobs/{owners.job_id}").status_code == 200
    with owners.client(cookie=f"traindock_key={owners.bob}") as http:
        assert http.get(f"/v1/jobs/{owners.job_id}").status_code == 404


def test_health_and_the_api_docs_stay_open(owners):
    with owners.client() as http:
        assert http.get("/healthz").status_code == 200
        schema = http.get("/openapi.json")
        assert schema.status_code == 200
        assert schema.json()["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert "401" in schema.json()["paths"]["/v1/jobs"]["get"]["responses"]


def test_signing_in_sets_a_strict_http_only_cookie(owners):
    with owners.client() as http:
        page = http.get(f"/jobs/{owners.job_id}")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/signin?next=%2Fjobs%2F")
        wrong = http.post("/signin", data={"key": "td_nope", "next": "/"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        elsewhere = http.post("/signin", data={"key": owners.alice, "next": "/"},
                              headers={"origin": "https://evil.example"})
        assert elsewhere.status_code == 403
        signed = http.post("/signin", data={"key": owners.alice, "next": "//evil.example/x"})
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith(f"traindock_key={owners.alice};"), cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
        out = http.post("/signout")
        assert out.status_code == 303 and 'traindock_key=""' in out.headers["set-cookie"]


def test_each_owner_has_its_own_webhook_secret(owners):
    secrets = []
    for token in (owners.alice, owners.reader, owners.bob):
        with owners.client(token) as http:
            response = http.get("/v1/webhooks/secret")
            assert response.status_code == 200, response.text
            secrets.append(response.json()["secret"])
    assert secrets[0] == secrets[1] != secrets[2]  # alice's two keys share one; bob has his
