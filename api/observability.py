"""What api/main.py calls to add /metrics, the HTTP series and X-Request-ID to the app."""

from __future__ import annotations

from fastapi import FastAPI

from api.http_metrics import HttpMetrics
from api.prometheus import DatabaseFigures
from api.request_id import RequestId
from api.routes import prometheus


def install_observability(app: FastAPI) -> None:
    """Call last in create_app: the request id's middleware must be the outermost, so that
    every response, those of the other middlewares included, carries X-Request-ID."""
    app.state.database_figures = DatabaseFigures(app.state.settings, app.state.database_watch)
    app.include_router(prometheus.router)
    app.add_middleware(HttpMetrics)
    app.add_middleware(RequestId)
