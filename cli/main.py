"""`traindock` entry point: one subcommand per verb; each verb lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cli.http import add_connection_options, run_client_verb

# the module of each client verb; they reach the API over HTTP only
CLIENT_VERBS = {"validate": "client", "gradcheck": "client", "submit": "client",
                "show": "client", "cancel": "client", "watch": "watch", "ls": "ls",
                "metrics": "metrics", "download": "download", "upload": "datasets",
                "datasets": "datasets", "rm-dataset": "datasets"}
# core.tables.JOB_STATES, repeated: the client does not import the server's code
JOB_STATES = ["queued", "running", "succeeded", "failed", "cancelled"]
JOB_HELP = "a job id, or at least its first 6 characters"


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

    connection = argparse.ArgumentParser(add_help=False)
    add_connection_options(connection)

    def client_verb(verb: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(verb, help=text, description=text, parents=[connection])

    validate = client_verb("validate", "check a job spec and show the network's shapes")
    validate.add_argument("spec", help="path to a JSON job spec, or - for standard input")

    gradcheck = client_verb(
        "gradcheck", "compare autograd with numerical gradients for a spec's network; exit 1 "
        "when a tensor's are suspect or wrong")
    gradcheck.add_argument("spec", help="path to a JSON job spec, or - for standard input")

    submit = client_verb("submit", "submit a job spec; print the job id")
    submit.add_argument("spec", help="path to a JSON job spec, or - for standard input")
    submit.add_argument("--watch", "--wait", dest="watch", action="store_true",
                        help="then watch it as `traindock watch` does; exit 0 if it succeeds")

    watch = client_verb("watch", "follow a job's progress until it ends, then summarize it")
    watch.add_argument("job", help=JOB_HELP)

    ls = client_verb("ls", "list the newest jobs")
    ls.add_argument("--state", choices=JOB_STATES, help="only jobs in this state")
    ls.add_argument("--limit", type=int, default=20, help="at most this many (1 to 500)")

    show = client_verb("show", "print a job as JSON")
    show.add_argument("job", help=JOB_HELP)
    show.add_argument("--startup", action="store_true",
                      help="only where its start-up went, phase by phase, as a table")

    metrics = client_verb("metrics", "the latest value of every metric, or every point")
    metrics.add_argument("job", help=JOB_HELP)
    metrics.add_argument("--names", help="comma-separated metric names, e.g. val_loss,lr")
    metrics.add_argument("--csv", action="store_true",
                         help="every point as CSV (name,step,epoch,value,wall_time)")

    cancel = client_verb("cancel", "cancel a queued or running job")
    cancel.add_argument("job", help=JOB_HELP)

    download = client_verb("download", "download a checkpoint, checked against its sha256")
    download.add_argument("job", help=JOB_HELP)
    download.add_argument("--checkpoint", type=int, metavar="ID",
                          help="a checkpoint id (default: the newest)")
    download.add_argument("-o", "--output", metavar="PATH",
                          help="file or folder to save to (default: <job name>-step-<n>.pt)")
    upload = client_verb("upload", "upload a dataset (npz, csv, MNIST IDX zip, image folders "
                                   "zip); print its id")
    upload.add_argument("file", help="the file to upload")
    upload.add_argument("--name", required=True, help="what jobs call it")
    upload.add_argument("--target", help="csv: the column to predict (default: the last)")
    upload.add_argument("--task", choices=["classification", "regression"],
                        help="default: inferred from the targets")
    upload.add_argument("--format", choices=["npz", "csv", "idx", "images"],
                        help="default: from the file name and contents")
    upload.add_argument("--image-size", type=int, help="images: resize to N x N")
    upload.add_argument("--color", choices=["grayscale", "rgb"], help="images (default rgb)")

    client_verb("datasets", "list the built-in and uploaded datasets")

    rm_dataset = client_verb("rm-dataset", "delete an uploaded dataset (refused while a "
                                           "queued or running job uses it)")
    rm_dataset.add_argument("dataset", help="its name or id")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        from cli.up import run_up

        return run_up(args)
    if args.command in ("migrate", "api", "worker"):
        from cli import serve

        return getattr(serve, f"run_{args.command}")(args)
    module = importlib.import_module(f"cli.{CLIENT_VERBS[args.command]}")
    return run_client_verb(getattr(module, f"run_{args.command.replace('-', '_')}"), args)


if __name__ == "__main__":
    sys.exit(main())
