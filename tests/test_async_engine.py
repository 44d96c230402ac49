"""The API's async engine hands out connections in the order they were asked for, on a real
PostgreSQL. SQLAlchemy's async pool gives a connection that is back in its queue to whoever
asks next, before the request it just woke runs, and that request goes to the back of the
line: under a steady stream of requests on one connection, some waited while 100 to 180
later ones went ahead (GET /v1/jobs/{id} had a p99 of 3.8 s against a p50 of 9 ms at 64
clients)."""

from __future__ import annotations

import asyncio

from core.db import make_async_engine
from core.settings import Settings

REQUESTS = 200


async def _grant_order(settings: Settings) -> list[int]:
    # One connection: whoever holds it is the only one served, so the order in which the
    # requests are served is the order in which the connection was handed out.
    engine = make_async_engine(settings, pool_size=1)
    order: list[int] = []

    async def request(number: int) -> None:
        async with engine.connect() as conn:
            order.append(number)
            await conn.exec_driver_sql("SELECT 1")

    try:
        async with engine.connect() as conn:  # opened ahead, so no request waits on a connect
            await conn.exec_driver_sql("SELECT 1")
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
    passed = max(abs(position - number) for position, number in enumerate(order))
    assert order == list(range(REQUESTS)), f"a request was passed by {passed} that asked after it"
