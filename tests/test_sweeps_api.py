"""POST /v1/sweeps honours an Idempotency-Key as POST /v1/jobs does; GET /v1/sweeps pages as
GET /v1/jobs does (limit, cursor, next_cursor) and each item carries its trials ended; GET
/v1/sweeps/{id} writes nothing (the row's xmin is unchanged). Over real HTTP and PostgreSQL;
the sweeps are cancelled at once, so no trial trains."""

from __future__ import annotations

import uuid

import httpx
import psycopg

from tests.test_sweeps import tiny_base
from traindock import Client


def sweep_body(name: str, lrs: tuple[float, ...] = (0.01, 0.1)) -> dict:
    return {"name": name, "base": tiny_base(), "method": "grid", "parallelism": 1,
            "parameters": {"optimizer.lr": {"values": list(lrs)}},
            "objective": {"metric": "val_loss", "at": "final"}}


def cancel(client: httpx.Client, sweep_id: str) -> None:
    response = client.post(f"/v1/sweeps/{sweep_id}/cancel")
    assert response.status_code in (202, 409), response.text


def all_sweeps(client: httpx.Client, limit: int) -> tuple[list[dict], int]:
    """Every sweep, page after page; and how many pages it took."""
    items, cursor, pages = [], None, 0
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/sweeps", params=params)
        assert page.status_code == 200, page.text
        pages += 1
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return items, pages


def test_a_retried_sweep_with_the_same_key_is_the_same_sweep(client):
    name = f"idem-{uuid.uuid4().hex[:6]}"
    key = {"Idempotency-Key": f"sweep-{uuid.uuid4()}"}
    first = client.post("/v1/sweeps", json=sweep_body(name), headers=key)
    assert first.status_code == 201, first.text
    sweep_id = first.json()["id"]
    try:
        again = client.post("/v1/sweeps", json=sweep_body(name), headers=key)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == sweep_id
        other = client.post("/v1/sweeps", json=sweep_body(name, (0.5, 0.05)), headers=key)
        assert other.status_code == 409, other.text
        assert "Idempotency-Key" in other.json()["detail"]
        items, _ = all_sweeps(client, 500)
        assert [s["id"] for s in items if s["name"] == name] == [sweep_id]
    finally:
        cancel(client, sweep_id)


def test_the_sweep_list_pages_with_a_cursor_and_a_read_writes_nothing(client, database_url):
    tag = uuid.uuid4().hex[:6]
    ids = []
    for i in range(3):
        created = client.post("/v1/sweeps", json=sweep_body(f"page-{tag}-{i}"))
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
        cancel(client, ids[-1])
    first = client.get("/v1/sweeps", params={"limit": 2}).json()
    assert [s["id"] for s in first["items"]] == ids[:0:-1]  # newest first
    assert first["next_cursor"]
    second = client.get("/v1/sweeps", params={"limit": 2, "cursor": first["next_cursor"]})
    assert second.json()["items"][0]["id"] == ids[0]
    items, pages = all_sweeps(client, 2)
    listed = [s["id"] for s in items]
    assert len(listed) == len(set(listed)) and set(ids) <= set(listed) and pages > 1
    mine = next(s for s in items if s["id"] == ids[0])
    assert (mine["trials_ended"], mine["trials_planned"]) == (1, 2)  # its one queued trial

    bad = client.get("/v1/sweeps", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422, bad.text
    assert bad.json()["detail"][0]["field"] == "cursor"

    def row_version() -> int:
        with psycopg.connect(database_url) as conn:
            return conn.execute("SELECT xmin::text::bigint FROM sweep WHERE id = %s",
                                (ids[0],)).fetchone()[0]

    before = row_version()
    for _ in range(2):
        assert client.get(f"/v1/sweeps/{ids[0]}").status_code == 200
    assert row_version() == before


def test_the_client_retries_a_sweep_safely_and_reads_every_page(api_url):
    with Client(api_url, timeout=30) as td:
        name = f"client-idem-{uuid.uuid4().hex[:6]}"
        key = f"client-{uuid.uuid4()}"
        first = td.submit_sweep(sweep_body(name), idempotency_key=key)
        try:
            assert td.submit_sweep(sweep_body(name), idempotency_key=key).id == first.id
            listed = [s.id for s in td.sweeps(page_size=1)]  # a page per sweep
            assert listed.count(first.id) == 1 and len(listed) == len(set(listed))
            assert [s.id for s in td.sweeps(limit=1)] == [first.id]  # the newest
        finally:
            td.cancel_sweep(first.id)
