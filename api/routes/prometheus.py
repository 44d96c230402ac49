"""GET /metrics: Prometheus's text format. The API's own series (HTTP requests, and the
process's CPU, memory and open files) come from prometheus_client's registry, summed over
every uvicorn worker process when there are several; the jobs' and workers' are read from
the database for each scrape (api/prometheus.py). docs/integration.md lists every series."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from api.prometheus import FiguresCollector

router = APIRouter(tags=["metrics"])


def process_series() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"example":
        'traindock_jobs{state="queued"} 3.0\ntraindock_database_up 1.0\n'}},
        "description": "every series, in Prometheus's text exposition format"}},
)
async def scrape(request: Request) -> Response:
    """Prometheus scrape target: jobs by state, queue depth, submit-to-start latency, each
    worker's heartbeat, training speed and metric-flush age, points written, and the API's
    HTTP requests by route template, method and status. Answers within
    TRAINDOCK_METRICS_QUERY_TIMEOUT_S even when the database does not
    (`traindock_database_up 0`)."""
    seen, read_s = await request.app.state.database_figures.read()
    figures = CollectorRegistry(auto_describe=False)
    figures.register(FiguresCollector(seen, read_s))
    return Response(process_series() + generate_latest(figures), media_type=CONTENT_TYPE_LATEST)
