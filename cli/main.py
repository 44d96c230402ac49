"""`traindock` entry point: one subcommand per verb; each verb lives in its own module."""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_URL = "http://127.0.0.1:8000"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="traindock", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser(
        "up", help="start PostgreSQL, the broker, the API and a worker on this machine"
    )
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--data-dir", default=os.environ.get("TRAINDOCK_DATA_DIR", "./traindock-data"))

    sub.add_parser("migrate", help="apply database migrations to TRAINDOCK_DATABASE_URL")

    api = sub.add_parser("api", help="serve the HTTP API (uvicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")

    worker = sub.add_parser("worker", help="run a training worker (one per GPU)")
    worker.add_argument("--name", default=None, help="worker node name (default: host and pid)")

    for verb, text in (("submit", "submit a job spec"), ("validate", "validate a job spec")):
        cmd = sub.add_parser(verb, help=text)
        cmd.add_argument("spec", help="path to a JSON job spec, or - for standard input")
        cmd.add_argument("--url", default=DEFAULT_URL)
        if verb == "submit":
            cmd.add_argument("--wait", action="store_true", help="poll until the job ends")

    show = sub.add_parser("show", help="print a job as JSON")
    show.add_argument("job_id")
    show.add_argument("--url", default=DEFAULT_URL)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        from cli.up import run_up

        return run_up(args)
    if args.command in ("migrate", "api", "worker"):
        from cli import serve

        return getattr(serve, f"run_{args.command}")(args)
    from cli import client

    return getattr(client, f"run_{args.command}")(args)


if __name__ == "__main__":
    sys.exit(main())
