"""The app's routes as one flat list, for the middlewares that decide before routing
(api/allowed_methods.py, api/input_rules.py).

FastAPI 0.16x keeps an included router as one entry of `app.router.routes` that routes
lazily; its `original_router` holds the APIRoutes themselves, whose paths are complete here
because every router carries its own prefix and is included without one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from starlette.routing import BaseRoute


def flat_routes(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from flat_routes(included.routes)
        else:
            yield route
