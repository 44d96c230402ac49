"""Exception handlers: every bad input is a 4xx whose message names the field."""

from __future__ import annotations

import json

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

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


async def request_validation_handler(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    if any(tuple(e.get("loc", ())) == ("path", "job_id") for e in errors):
        return await not_a_full_job_id(request, str(request.path_params.get("job_id", "")))
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {})
        return JSONResponse(
            status_code=422,
            content={"detail": [{"field": "body", "type": "json_invalid",
                                 "message": f"body: not valid JSON ({ctx.get('error', '')})"}]},
        )
    return JSONResponse(status_code=422,
                        content={"detail": pydantic_details(errors, _body(exc))})


async def spec_error_handler(request: Request, exc: SpecError):
    return JSONResponse(status_code=422, content={"detail": spec_error_details(exc)})


async def database_down_handler(request: Request,
                                exc: OperationalError | psycopg.OperationalError):
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": "5"},
        content={"detail": "the database is unreachable; try again shortly"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(SpecError, spec_error_handler)
    app.add_exception_handler(OperationalError, database_down_handler)
    # The routes on the event loop send their statements with psycopg itself (api/deps.py).
    app.add_exception_handler(psycopg.OperationalError, database_down_handler)
