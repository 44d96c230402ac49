"""The API's async engine hands out connections in the order they were asked for, on a real
PostgreSQL. SQLAlchemy's async pool gives a connection that is back in its queue to whoever
asks next, before the request it just woke runs, and that request goes to the back of the
line: under a steady stream of requests some waited while 150 later ones went ahead (GET
/v1/jobs/{id} had a p99 of 1.8 s against a p50 of 9 ms at 64 clients)."""

from __future__ import annotations

import asyncio

from core.db import make_async_engine
from core.settings import Settings

POOL = 2
REQUESTS = 200


async def _grant_order(settings: Settings) -> list[int]:
    engine = make_async_engine(settings, pool_size=POOL)
    order: list[int] = []

    async def request(number: int) -> None:
        async with engine.connect() as conn:
            order.append(number)
            await conn.exec_driver_sql("SELECT 1")

    try:
        async def open_one() -> None:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SELECT pg_sleep(0.05)")

        # Every connection opened ahead, so that no request waits on a connect.
        await asyncio.gather(*(open_one() for _ in range(POOL)))
        requests = []
        for number in range(REQUESTS):  # a new request on every turn of the loop, as from clients
            requests.append(asyncio.create_task(request(number)))
            await asyncio.sleep(0)
        await asyncio.gather(*requests)
    finally:
        await engine.engine.dispose()
    return order


def test_connections_go_to_requests_in_the_order_they_asked(settings: Settings) -> None:
    order = asyncio.run(_grant_order(settings))
    assert sorted(order) == list(range(REQUESTS))
    # Only a request that asked while the other connection was free may pass one ahead of it.
    passed = max(abs(position - number) for position, number in enumerate(order))
    assert passed <= POOL, f"a request was passed by {passed} that asked after it: {order}"
