"""`traindock` entry point: one subcommand per verb; each verb lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cli.http import add_connection_options, run_client_verb
from cli.keys_parser import add_keys_parser

# the module of each client verb; they reach the API over HTTP only
CLIENT_VERBS = {"validate": "client", "gradcheck": "client", "submit": "client",
                "show": "client", "cancel": "client", "watch": "watch", "ls": "ls",
                "metrics": "metrics", "download": "download", "upload": "datasets",
                "datasets": "datasets", "rm-dataset": "datasets", "logs": "logs",
                "rm": "rm", "lr-find": "lr_find", "sweep": "sweeps", "sweeps": "sweeps",
                "best": "sweeps", "export": "export", "predict": "predict"}
# core.tables.JOB_STATES, repeated: the client does not import the server's code
JOB_STATES = ["queued", "running", "succeeded", "failed", "cancelled", "pruned"]
JOB_HELP = "a job id, or at least its first 6 characters"


class VersionAction(argparse.Action):
    """--version: the installed distribution's version, looked up only when asked (reading
    the package metadata costs a tenth of a second on every other command)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help="print the installed version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from importlib import metadata  # here: importing it is a good part of that cost

        try:
            version = metadata.version("traindock")
        except metadata.PackageNotFoundError:  # a checkout run without installing
            version = "(not installed: pip install -e .)"
        print(f"{parser.prog} {version}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="traindock", description=__doc__)
    parser.add_argument("-V", "--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser(
        "up", help="start PostgreSQL, the broker, the API and a worker on this machine"
    )
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--data-dir", default=os.environ.get("TRAINDOCK_DATA_DIR", "./traindock-data"))

    up.add_argument("--no-auth", action="store_true",
                    help="serve without API keys (every caller is an admin): allowed only on a "
                    "loopback --host such as 127.0.0.1")

    sub.add_parser("migrate", help="apply database migrations to TRAINDOCK_DATABASE_URL")
    add_keys_parser(sub)

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
    validate.add_argument(
        "--input-shape", metavar="SHAPE",
        help="build the network for this input shape instead of the dataset's, per sample, "
        "e.g. 1,64,64 (what a network's size does with its input's)")

    gradcheck = client_verb(
        "gradcheck", "compare autograd with numerical gradients for a spec's network; exit 1 "
        "when a tensor's are suspect or wrong")
    gradcheck.add_argument("spec", help="path to a JSON job spec, or - for standard input")

    submit = client_verb("submit", "submit a job spec; print the job id")
    submit.add_argument("spec", help="path to a JSON job spec, or - for standard input")
    submit.add_argument("--watch", "--wait", dest="watch", action="store_true",
                        help="then watch it as `traindock watch` does; exit 0 if it succeeds")

    lr_find = client_verb(
        "lr-find", "run a learning-rate range test on a spec and print the suggested rate; "
        "exit 1 when the test fails or suggests none")
    lr_find.add_argument("spec", help="path to a JSON job spec, or - for standard input")
    lr_find.add_argument("--rule", choices=["valley", "steep", "minimum"],
                         help="the rule whose rate is the suggestion (default: valley)")
    lr_find.add_argument("--start-lr", type=float, metavar="LR", help="default 1e-7")
    lr_find.add_argument("--end-lr", type=float, metavar="LR", help="default 10")
    lr_find.add_argument("--steps", type=int, metavar="N", help="default 100")

    watch = client_verb("watch", "follow a job's progress until it ends, then summarize it")
    watch.add_argument("job", help=JOB_HELP)

    ls = client_verb("ls", "list the newest jobs")
    ls.add_argument("--state", choices=JOB_STATES, help="only jobs in this state")
    ls.add_argument("--limit", type=int, default=20, help="at most this many (1 to 500)")

    show = client_verb("show", "print a job as JSON")
    show.add_argument("job", help=JOB_HELP)
    show.add_argument("--startup", action="store_true",
                      help="only where its start-up went, phase by phase, as a table")
    show.add_argument("--preflight", action="store_true",
                      help="only the checks run before its first step, and their findings")

    metrics = client_verb("metrics", "the latest value of every metric, or every point")
    metrics.add_argument("job", help=JOB_HELP)
    metrics.add_argument("--names", help="comma-separated metric names, e.g. val_loss,lr")
    metrics.add_argument("--csv", action="store_true",
                         help="every point as CSV (name,step,epoch,value,wall_time)")

    logs = client_verb("logs", "print an attempt's log (the training process's output)")
    logs.add_argument("job", help=JOB_HELP)
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing what it writes until the attempt ends")
    logs.add_argument("--attempt", type=int, metavar="N",
                      help="which attempt (default: the latest that has a log)")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")

    cancel = client_verb("cancel", "cancel a queued or running job")
    cancel.add_argument("job", help=JOB_HELP)

    rm = client_verb("rm", "delete a job that has ended, with its metrics, checkpoints and "
                           "logs (cancel a queued or running one first)")
    rm.add_argument("job", help=JOB_HELP)

    download = client_verb("download", "download a checkpoint, checked against its sha256")
    download.add_argument("job", help=JOB_HELP)
    which = download.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", type=int, metavar="ID",
                       help="a checkpoint id (default: the newest)")
    which.add_argument("--best", action="store_true",
                       help="the best checkpoint (by the monitored metric, else val_loss)")
    download.add_argument("-o", "--output", metavar="PATH", help="file or folder to save to "
                          "(default: <job name>-<id8>-step-<n>.pt)")
    download.add_argument("--force", action="store_true", help="replace an existing file")
    export = client_verb("export", "save a checkpoint as ONNX, a torch.export program or "
                                   "safetensors + model.json, runnable without traindock "
                                   "(docs/models.md)")
    export.add_argument("job", help=JOB_HELP)
    export.add_argument("--format", required=True, choices=["onnx", "pt2", "safetensors"])
    export.add_argument("--checkpoint", default="best", metavar="best|last|STEP",
                        help="which checkpoint (default: best, else the last)")
    export.add_argument("-o", "--output", metavar="PATH", help="file or folder to save to "
                        "(default: <job name>-<id8>-step-<n>.<format>)")
    export.add_argument("--force", action="store_true", help="replace an existing file")
    predict = client_verb("predict", "print a job's predictions for a file's rows (.csv, "
                                     ".npz, .png/.jpg) or JSON rows on standard input, one "
                                     "line per row: class and probability, or values")
    predict.add_argument("job", help=JOB_HELP)
    predict.add_argument("input", metavar="FILE|-", help="a .csv, .npz, .png or .jpg file, a "
                         ".json file, or - for JSON on standard input")
    predict.add_argument("--checkpoint", default="best", metavar="best|last|STEP",
                         help="which checkpoint (default: best, else the last)")
    predict.add_argument("--json", action="store_true", help="print the whole answer as JSON")
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

    sweep = client_verb("sweep", "create a sweep (docs/sweeps.md); print its id")
    sweep.add_argument("spec", help="path to a JSON sweep spec, or - for standard input")
    sweep.add_argument("--watch", action="store_true",
                       help="then show its trials as a table until it ends; exit 0 if it "
                       "succeeds")
    client_verb("sweeps", "list sweeps, newest first")
    best = client_verb("best", "print a sweep's best configuration, and its spec as JSON on "
                               "standard output")
    best.add_argument("sweep", help="a sweep id, its first characters, or its name")
    best.add_argument("-o", "--output", metavar="PATH",
                      help="write the spec to this file instead (and print its path)")

    rm_dataset = client_verb("rm-dataset", "delete an uploaded dataset (refused while a "
                                           "queued or running job uses it)")
    rm_dataset.add_argument("dataset", help="its name or id")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        from cli.up import run_up

        return run_up(args)
    if args.command == "keys":
        from cli.keys import run_keys

        return run_keys(args)
    if args.command in ("migrate", "api", "worker"):
        from cli import serve

        return getattr(serve, f"run_{args.command}")(args)
    module = importlib.import_module(f"cli.{CLIENT_VERBS[args.command]}")
    return run_client_verb(getattr(module, f"run_{args.command.replace('-', '_')}"), args)


if __name__ == "__main__":
    sys.exit(main())
