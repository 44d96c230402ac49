"""The long-running processes: migrate, api, worker. Used by `traindock up` and by compose."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile

from cli.up_key import is_loopback
from core.settings import get_settings


def run_migrate(args: argparse.Namespace) -> int:
    from core.migrate import upgrade

    upgrade(get_settings().sqlalchemy_url)
    print("migrations applied")
    return 0


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    from core.log_format import resolve_format, uvicorn_log_config

    # The address it listens on is one of the host names it answers to (api/browser_defences.py);
    # the environment carries it to every uvicorn worker process.
    os.environ["TRAINDOCK_BIND_HOST"] = args.host
    get_settings.cache_clear()
    settings = get_settings()
    if not settings.auth and not is_loopback(args.host):
        print(f"error: TRAINDOCK_AUTH=off on --host {args.host}: anyone who can reach that "
              "address could read, submit and cancel every job. Keep keys on, or listen on a "
              "loopback address (--host 127.0.0.1)", file=sys.stderr)
        return 2
    shared = share_prometheus_counts() if args.workers > 1 else None
    try:
        uvicorn.run(
            "api.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            timeout_keep_alive=settings.http_keep_alive_s,
            log_config=uvicorn_log_config(resolve_format(settings.log_format)),
            log_level="info",
        )
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
    return 0


def share_prometheus_counts() -> str | None:
    """Several uvicorn processes: prometheus_client keeps each one's counts in files in one
    folder, which a scrape of any of them adds up. A new folder for each run, on this machine
    (not under DATA_DIR, which other machines' APIs may share): files a previous run left would
    be added in. Set before any worker imports prometheus_client. Returns the folder made."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None  # chosen by whoever runs this; theirs to empty
    folder = tempfile.mkdtemp(prefix="traindock-prometheus-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def run_worker(args: argparse.Namespace) -> int:
    from worker.celery_app import app

    name = args.name or f"worker-{os.getpid()}@{socket.gethostname()}"
    # One worker process per GPU: the solo pool runs the supervising task in this process,
    # and the training itself runs in a child interpreter that the task starts.
    app.worker_main(["worker", "--pool=solo", "--loglevel=INFO", "-n", name, "-Q", "traindock"])
    return 0
