"""Many clients at once on one API process: every request is answered. Each request used to
hold its database connection while it waited for a thread for its route; past the pool's 15
connections, every thread waited for a connection held by a request waiting for a thread,
and GET /v1/jobs/{id} stalled at 64 clients."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.conftest import load_example

CLIENTS = 64
REQUESTS = 640


async def _read_concurrently(api_url: str, path: str) -> list[int | str]:
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=api_url, timeout=20, limits=limits) as http:
        gate = asyncio.Semaphore(CLIENTS)

        async def read() -> int | str:
            async with gate:
                try:
                    return (await http.get(path)).status_code
                except httpx.HTTPError as exc:
                    return type(exc).__name__

        return await asyncio.gather(*(read() for _ in range(REQUESTS)))


def test_sixty_four_clients_reading_a_job_are_all_answered(client, api_url) -> None:
    response = client.post("/v1/jobs", json={**load_example("digits-mlp"),
                                             "name": "concurrency"})
    assert response.status_code == 201, response.text
    path = f"/v1/jobs/{response.json()['id']}"
    started = time.monotonic()
    codes = asyncio.run(_read_concurrently(api_url, path))
    elapsed = time.monotonic() - started
    assert codes == [200] * REQUESTS, {code: codes.count(code) for code in set(codes)}
    assert elapsed < 30, f"{REQUESTS} reads took {elapsed:.1f} s"
    client.post(f"{path}/cancel")
