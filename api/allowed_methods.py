"""405 with the `Allow` header every route of the path has, decided before routing.

Starlette answers a method that a path does not take with the methods of the first route that
matched only the path, so `PUT /v1/jobs` said `Allow: POST` although GET works too. And a
literal path is shadowed by a parametrised one for the methods it lacks: `GET
/v1/jobs/validate` reached `GET /v1/jobs/{job_id}` and answered that `validate` is not a job
id. Here a literal path wins over a parametrised one, and the answer lists the methods of all
the routes it names.
"""

from __future__ import annotations

import json

from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from api.route_table import flat_routes


def allowed_methods(routes: list[BaseRoute], scope: Scope
                    ) -> tuple[list[str], BaseRoute] | None:
    """The methods the request's path takes, when its own method is not one of them, and the
    route that names the path; None when the request can go on to the router (it matches a
    route, or no route at all)."""
    matched = [(route, match) for route in flat_routes(routes)
               if (match := route.matches(scope)[0]) is not Match.NONE]
    literal = [(route, match) for route, match in matched
               if isinstance(route, Route) and not route.param_convertors]
    deciding = literal or matched
    if not deciding or any(match is Match.FULL for _, match in deciding):
        return None
    methods = {method for route, _ in deciding for method in getattr(route, "methods", ())}
    return (sorted(methods), deciding[0][0]) if methods else None


class AllowedMethods:
    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # the app's own list: routes added later are seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (found := allowed_methods(self.routes, scope)) is None:
            await self.app(scope, receive, send)
            return
        allow, scope["route"] = found  # as the router leaves it: metrics label by its template
        body = json.dumps({"detail": f"{scope['method']} is not allowed on {scope['path']}; "
                                     f"use {' or '.join(allow)}"}).encode()
        await send({"type": "http.response.start", "status": 405,
                    "headers": [(b"allow", ", ".join(allow).encode()),
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
