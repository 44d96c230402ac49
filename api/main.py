"""The app factory: settings, database, publisher, routers. Nothing else lives here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from sqlalchemy.orm import sessionmaker

from api.allowed_methods import AllowedMethods
from api.api_docs import install_docs
from api.auth import AUTH_RESPONSES, authenticate
from api.browser_defences import BrowserDefences
from api.db_watch import DatabaseGate, DatabaseWatch
from api.errors import install_error_handlers
from api.input_errors import install_input_errors
from api.input_rules import InputRules
from api.limits import BodySizeLimit
from api.observability import install_observability
from api.openapi_doc import install_openapi
from api.rate_limit import RateLimiter
from api.routes import (
    checkpoints,
    compare,
    dashboard,
    datasets,
    events,
    exports,
    gradcheck,
    health,
    job_delete,
    jobs,
    keys,
    logs,
    metrics,
    predict,
    signin,
    sweeps,
    usage,
    webhooks,
    workers,
)
from core.dataset_store import sweep_stale
from core.db import make_async_engine, make_engine
from core.queue import BackgroundPublisher, Publisher
from core.settings import Settings, get_settings
from models.build import warm_up_shapes


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    watching = asyncio.create_task(app.state.database_watch.run(), name="database-watch")
    # In a thread, not before serving: the first POST /v1/jobs or /v1/sweeps would otherwise
    # wait for torch's decompositions to import (docs/benchmarks.md, "Small sweep trials").
    warming = asyncio.create_task(asyncio.to_thread(warm_up_shapes), name="warm-up-shapes")
    try:
        yield
    finally:
        watching.cancel()
        warming.cancel()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        lifespan=lifespan,
        title="traindock",
        version="0.1.0",
        description="Train neural networks described as data. Submit a JobSpec to "
        "`POST /v1/jobs`; read its state, metrics and checkpoints back.",
        docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None,  # api/api_docs.py
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings, statement_timeout=True)
    app.state.sessionmaker = sessionmaker(app.state.engine, expire_on_commit=False)
    app.state.async_engine = make_async_engine(settings)
    app.state.publisher = BackgroundPublisher(Publisher(settings))
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    # A crash mid-upload leaves a received body or a half-written folder; clear old ones.
    sweep_stale(settings.dataset_dir, settings.data_dir / "uploads")
    install_error_handlers(app)
    install_input_errors(app)
    app.add_middleware(InputRules, routes=app.router.routes, max_body_bytes=settings.max_spec_bytes)
    # Dataset uploads are streamed to disk and capped by TRAINDOCK_MAX_UPLOAD_BYTES instead.
    # Predictions may send files (images, CSV, .npz): their own, larger limit.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_spec_bytes,
                       exempt=frozenset({("POST", "/v1/datasets")}),
                       larger={"/predict": (settings.predict_max_body_bytes,
                                            "send fewer rows at once (setting "
                                            "TRAINDOCK_PREDICT_MAX_BODY_BYTES)")})
    app.state.database_watch = DatabaseWatch(settings)
    app.add_middleware(DatabaseGate, watch=app.state.database_watch)
    # Every /v1 route needs an API key (api/auth.py); /healthz, /metrics, /docs and the
    # dashboard's pages and files do not (the pages ask for a key themselves).
    for module in (jobs, gradcheck, metrics, events, checkpoints, exports, predict, datasets,
                   workers, logs, job_delete, webhooks, keys, usage, sweeps, compare):
        app.include_router(module.router, dependencies=[Depends(authenticate)],
                           responses=AUTH_RESPONSES)
    for module in (health, dashboard, signin):
        app.include_router(module.router)
    install_docs(app)
    install_openapi(app)
    # Before anything else but the request id: a foreign page or host name is refused.
    app.add_middleware(AllowedMethods, routes=app.router.routes)
    app.add_middleware(BrowserDefences, settings=settings)
    install_observability(app)  # last: its request-id middleware wraps all the others

    return app
