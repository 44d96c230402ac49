"""Rules every request's input meets before a route sees it, whatever the route: a 422 naming
the value, instead of a 500 from deep inside.

- No NUL character in a path parameter, a query parameter or a JSON string (PostgreSQL text
  cannot hold one).
- Integers within the 64-bit range, in integer path, query and header parameters and
  anywhere in a JSON body (PostgreSQL's bigint, and the OpenAPI document says so:
  api/openapi_doc.py).
- A JSON body nested no deeper than MAX_JSON_DEPTH (deeper ones made the parser and the
  validators overflow Python's stack).
"""

from __future__ import annotations

import json
from typing import Any, get_args

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.datastructures import Headers, QueryParams
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.route_table import flat_routes

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_JSON_DEPTH = 64
JSON_METHODS = frozenset({"POST", "PUT", "PATCH"})


class InputProblem(Exception):
    def __init__(self, field: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.field, self.kind = field, kind

    def detail(self) -> list[dict[str, str]]:
        return [{"field": self.field, "type": self.kind, "message": f"{self.field}: {self}"}]


def check_text(field: str, value: str) -> None:
    if "\x00" in value:
        raise InputProblem(field, "nul_character",
                           "contains a NUL character (\\u0000); remove it")


def check_integer(field: str, value: int) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InputProblem(field, "int64_range",
                           f"{value} is outside the 64-bit integer range ({INT64_MIN} to "
                           f"{INT64_MAX}); send a number within it")


def _is_integer(annotation: Any) -> bool:
    return annotation is int or int in get_args(annotation)


def _parameters(route: APIRoute) -> tuple[tuple[str, str, bool], ...]:
    """(where, name as sent, is an integer) for each parameter the route and its dependencies
    declare, `where` being path, query or header."""
    found: list[tuple[str, str, bool]] = []

    def walk(dependant: Dependant) -> None:
        for where, fields in (("path", dependant.path_params), ("query", dependant.query_params),
                              ("header", dependant.header_params)):
            for field in fields:
                name = field.alias.replace("_", "-").lower() if where == "header" else field.alias
                found.append((where, name, _is_integer(field.field_info.annotation)))
        for sub in dependant.dependencies:
            walk(sub)

    # Kept on the route itself (an APIRoute is not hashable, and an id can be reused).
    cached = getattr(route, "_input_rule_parameters", None)
    if cached is None:
        walk(route.dependant)
        cached = tuple(dict.fromkeys(found))
        route._input_rule_parameters = cached  # type: ignore[attr-defined]
    return cached


def check_parameters(route: APIRoute, scope: Scope, path_params: dict[str, Any]) -> None:
    query = QueryParams(scope.get("query_string", b""))
    headers = Headers(scope=scope)
    for where, name, integer in _parameters(route):
        if where == "path":
            values = [str(path_params.get(name, ""))]
        elif where == "query":
            values = query.getlist(name)
        else:
            values = headers.getlist(name)
        for value in values:
            field = f"{where}.{name}"
            check_text(field, value)
            text = value.strip()
            if integer and text.lstrip("+-").isdigit() and len(text) < 4000:
                check_integer(field, int(text))


def _path(parts: tuple[str | int, ...]) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or "body"


def check_json(body: bytes) -> None:
    """Raises InputProblem for a NUL, an integer out of range or nesting beyond the limit;
    a body that is not JSON is left to the route, which says where it breaks."""
    try:
        document = json.loads(body)
    except RecursionError:
        raise InputProblem("body", "json_too_deep",
                           f"nested deeper than {MAX_JSON_DEPTH} levels; flatten it") from None
    except json.JSONDecodeError:
        return  # the route's own answer gives the line and column (api/errors.py)
    except ValueError as exc:  # not UTF-8, or a number of thousands of digits
        raise InputProblem("body", "json_invalid",
                           f"not valid JSON ({exc}); send UTF-8 JSON") from None
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        value, parts = stack.pop()
        if isinstance(value, dict | list) and len(parts) >= MAX_JSON_DEPTH:
            raise InputProblem(_path(parts), "json_too_deep",
                               f"nested deeper than {MAX_JSON_DEPTH} levels; flatten it")
        if isinstance(value, dict):
            for key, item in value.items():
                check_text(_path((*parts, key)), key)
                stack.append((item, (*parts, key)))
        elif isinstance(value, list):
            stack.extend((item, (*parts, i)) for i, item in enumerate(value))
        elif isinstance(value, str):
            check_text(_path(parts), value)
        elif isinstance(value, int) and not isinstance(value, bool):
            check_integer(_path(parts), value)


def _is_json(headers: Headers) -> bool:
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    return kind in ("", "application/json") or kind.endswith("+json")


class InputRules:
    """`max_body_bytes`: JSON bodies up to this are checked; larger ones (only where a route
    streams its own body) go on unread."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute], max_body_bytes: int) -> None:
        self.app = app
        self.routes = routes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, path_params = self._route(scope)
        try:
            if route is not None:
                check_parameters(route, scope, path_params)
            if (route is not None and route.body_field is not None
                    and scope["method"] in JSON_METHODS and _is_json(Headers(scope=scope))):
                messages, body = await self._read(receive)
                if body is not None:
                    check_json(body)
                receive = _replay(messages, receive)
        except InputProblem as problem:
            await _refuse(send, problem)
            return
        await self.app(scope, receive, send)

    def _route(self, scope: Scope) -> tuple[APIRoute | None, dict[str, Any]]:
        for route in flat_routes(self.routes):
            match, child = route.matches(scope)
            if match is Match.FULL:
                if isinstance(route, APIRoute):
                    return route, child.get("path_params", {})
                return None, {}
        return None, {}

    async def _read(self, receive: Receive) -> tuple[list[Message], bytes | None]:
        """The body's messages, and the body itself unless it is over the limit."""
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                return messages, None
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        return messages, b"".join(m.get("body", b"") for m in messages)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


async def _refuse(send: Send, problem: InputProblem) -> None:
    body = json.dumps({"detail": problem.detail()}).encode()
    await send({"type": "http.response.start", "status": 422,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
