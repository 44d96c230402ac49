"""`traindock upload`, `traindock datasets`, `traindock rm-dataset`: a user's own data, over
HTTP like every client verb."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.format import render_table
from cli.http import ApiError
from traindock.transport import Transport

UPLOAD_TIMEOUT_S = 3600.0  # a large file on a slow link; the server caps the size


def _shape(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape) or "-"


def _splits(splits: dict[str, Any]) -> str:
    return " / ".join(f"{name} {n}" for name, n in splits.items() if n)


def run_upload(api: Transport, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise ApiError([f"no file {args.file}"])
    fields = {"name": args.name}
    for option in ("target", "task", "format", "color"):
        if getattr(args, option):
            fields[option] = getattr(args, option)
    if args.image_size:
        fields["image_size"] = str(args.image_size)
    created = api.upload("/v1/datasets", path, fields, UPLOAD_TIMEOUT_S)
    classes = created.get("num_classes")
    print(f"{created['id']}  {created['name']}: {created['task']}"
          f"{f', {classes} classes' if classes else ''}, input {_shape(created['input_shape'])}, "
          f"{_splits(created['splits'])}; sha256 {created['sha256'][:12]}")
    print(f'train on it with "dataset": {{"name": "{created["name"]}"}}')
    return 0


def run_datasets(api: Transport, args: argparse.Namespace) -> int:
    rows = [[d["name"], "built-in" if d["builtin"] else d["format"], d["task"],
             _shape(d["input_shape"]), str(d.get("num_classes") or "-"),
             _splits(d["splits"]) if not d["builtin"] else str(d["n_samples"]),
             d.get("id", "")[:8] if not d["builtin"] else ""]
            for d in api.get("/v1/datasets")]
    print(render_table(["name", "format", "task", "input", "classes", "samples", "id"], rows))
    return 0


def run_rm_dataset(api: Transport, args: argparse.Namespace) -> int:
    api.delete(f"/v1/datasets/{args.dataset}")
    print(f"deleted {args.dataset}")
    return 0
