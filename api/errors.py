"""Exception handlers: every bad input is a 4xx whose message names the field."""

from __future__ import annotations

import json

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from api.db_watch import retry_after_s
from api.job_prefix import not_a_full_job_id
from core.errors import pydantic_details, spec_error_details
from models.build import SpecError


def _body(exc: RequestValidationError) -> object:
    body = exc.body
    if isinstance(body, bytes | str):
        try:
            return json.loads(body)
        except ValueError:
            return None
    return body


def _json_error_message(exc: RequestValidationError, error: dict) -> str:
    """The decoder's complaint with its line and column, as `json.loads` would put it."""
    loc = error.get("loc", ())
    pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
    doc = exc.body if isinstance(exc.body, str) else ""
    where = json.JSONDecodeError(error.get("ctx", {}).get("error", "JSON decode error"), doc, pos)
    return f"body: not valid JSON ({where}); fix the JSON at that line and column"


def _content_type_problem(request: Request, exc: RequestValidationError) -> JSONResponse | None:
    """FastAPI hands a JSON route the raw bytes when the Content-Type is not JSON (curl's
    `-d` sends application/x-www-form-urlencoded), and pydantic then says only that they are
    not a dictionary. Say what to send instead."""
    if not isinstance(exc.body, bytes):
        return None
    sent = request.headers.get("content-type")
    sent = f"Content-Type {sent}" if sent else "no Content-Type"
    return JSONResponse(status_code=415, content={"detail": [{
        "field": "header.content-type", "type": "content_type",
        "message": f"header.content-type: the body came with {sent}; send it with "
                   "Content-Type: application/json (curl: -H 'content-type: application/json')",
    }]})


async def request_validation_handler(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    if any(tuple(e.get("loc", ())) == ("path", "job_id") for e in errors):
        return await not_a_full_job_id(request, str(request.path_params.get("job_id", "")))
    invalid = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if invalid is not None:
        return JSONResponse(
            status_code=422,
            content={"detail": [{"field": "body", "type": "json_invalid",
                                 "message": _json_error_message(exc, invalid)}]},
        )
    if (wrong_type := _content_type_problem(request, exc)) is not None:
        return wrong_type
    return JSONResponse(status_code=422,
                        content={"detail": pydantic_details(errors, _body(exc))})


async def spec_error_handler(request: Request, exc: SpecError):
    return JSONResponse(status_code=422, content={"detail": spec_error_details(exc)})


async def database_down_handler(request: Request,
                                exc: OperationalError | psycopg.OperationalError):
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": str(retry_after_s(request.app.state.database_watch))},
        content={"detail": "the database is unreachable; try again shortly"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(SpecError, spec_error_handler)
    app.add_exception_handler(OperationalError, database_down_handler)
    # The routes on the event loop send their statements with psycopg itself (api/deps.py).
    app.add_exception_handler(psycopg.OperationalError, database_down_handler)
