"""The long-running processes: migrate, api, worker. Used by `traindock up` and by compose."""

from __future__ import annotations

import argparse
import os
import socket

from core.settings import get_settings


def run_migrate(args: argparse.Namespace) -> int:
    from core.migrate import upgrade

    upgrade(get_settings().sqlalchemy_url)
    print("migrations applied")
    return 0


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        timeout_keep_alive=get_settings().http_keep_alive_s,
        log_level="info",
    )
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from worker.celery_app import app

    name = args.name or f"worker-{os.getpid()}@{socket.gethostname()}"
    # One worker process per GPU: the solo pool runs the supervising task in this process,
    # and the training itself runs in a child interpreter that the task starts.
    app.worker_main(["worker", "--pool=solo", "--loglevel=INFO", "-n", name, "-Q", "traindock"])
    return 0
