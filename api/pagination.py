"""Keyset pages: the `cursor` query parameter every list route takes back from its
`next_cursor` (GET /v1/jobs, GET /v1/sweeps)."""

from __future__ import annotations

from fastapi import HTTPException

from core.repo.jobs import Cursor


def decode_cursor(cursor: str | None) -> Cursor | None:
    """The page's position; None for the first page. A 422 naming `cursor` for a string
    this API did not write."""
    if not cursor:
        return None
    try:
        return Cursor.decode(cursor)
    except ValueError:
        raise HTTPException(422, [{
            "field": "cursor", "type": "value_error",
            "message": "cursor: not a cursor returned by this API; pass next_cursor as is",
        }]) from None
