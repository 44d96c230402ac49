"""Exception handlers for inputs that get past api/input_rules.py and break something deeper:
still a 4xx that says what to change, never a 500."""

from __future__ import annotations

import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


async def out_of_memory(request: Request, exc: MemoryError) -> JSONResponse:
    return JSONResponse(status_code=413, content={"detail": (
        "the request needs more memory than the server can give it; send a smaller body or "
        "ask for less (fewer points, a smaller batch, a shorter tail)")})


async def too_deep(request: Request, exc: RecursionError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": [{
        "field": "body", "type": "too_deep",
        "message": "body: nested too deeply to process; flatten it"}]})


async def database_refused_value(request: Request,
                                 exc: sqlalchemy.exc.DataError | psycopg.DataError
                                 ) -> JSONResponse:
    """PostgreSQL refused a value the request carried (a NUL in text, a number out of its
    column's range) that no earlier check caught; its own words name the problem."""
    cause = exc.orig if isinstance(exc, sqlalchemy.exc.DataError) else exc
    reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    return JSONResponse(status_code=422, content={"detail": [{
        "field": "request", "type": "data_error",
        "message": f"request: the database refused a value in it ({reason}); change that "
                   "value"}]})


def install_input_errors(app: FastAPI) -> None:
    app.add_exception_handler(MemoryError, out_of_memory)
    app.add_exception_handler(RecursionError, too_deep)
    app.add_exception_handler(sqlalchemy.exc.DataError, database_refused_value)
    app.add_exception_handler(psycopg.DataError, database_refused_value)
