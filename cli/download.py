"""`traindock download JOB`: a checkpoint file, checked against its SHA-256 before it is kept."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.http import ApiError
from cli.jobref import resolve_job
from traindock.errors import ChecksumMismatch
from traindock.transport import Transport


def pick_checkpoint(checkpoints: list[dict[str, Any]], job: dict[str, Any],
                    wanted: int | None, best: bool = False) -> dict[str, Any]:
    """The checkpoint with id `wanted`, the one the API marks best, else the newest."""
    if not checkpoints:
        raise ApiError([f"job {job['id']} has no checkpoints yet (it is {job['state']})"])
    if best:
        for checkpoint in checkpoints:
            if checkpoint.get("best"):
                return checkpoint
        raise ApiError([f"job {job['id']} has no best checkpoint: none recorded the metric it "
                        "monitors (val_loss unless early stopping or reduce_on_plateau names "
                        "another); leave out --best for the newest"])
    if wanted is None:
        return max(checkpoints, key=lambda c: (c["step"], c["id"]))
    for checkpoint in checkpoints:
        if checkpoint["id"] == wanted:
            return checkpoint
    kept = ", ".join(f"{c['id']} (step {c['step']})" for c in checkpoints)
    raise ApiError([f"job {job['id']} has no checkpoint {wanted}; it keeps {kept}"])


def target_path(output: str | None, filename: str, force: bool) -> Path:
    """-o PATH as given, inside it if it is a folder; by default the listing's `filename`
    (`<job name>-<id8>-step-<n>.pt`). An existing file is refused unless `force`."""
    filename = Path(filename).name  # never a path the server chose
    path = Path(filename) if output is None else Path(output)
    if path.is_dir():
        path = path / filename
    if path.exists() and not force:
        raise ApiError([f"{path} already exists; nothing was downloaded. Pass --force to "
                        "replace it, or -o PATH to save elsewhere"])
    return path


def save_verified(api: Transport, url: str, expected: str, path: Path) -> None:
    """Keep the file at `path` only if its SHA-256 is the listing's and the server's header's
    (the client streams it to a temporary file beside `path`, renamed into place once checked)."""
    try:
        api.download(url, path, expected)
    except ChecksumMismatch as exc:
        if exc.header and exc.header != expected:
            raise ApiError([f"the server's X-Checksum-Sha256 {exc.header} is not the listing's "
                            f"{expected}; nothing was saved"]) from None
        raise ApiError([f"the downloaded file's sha256 {exc.actual} is not the listing's "
                        f"{expected} (a broken transfer?); nothing was saved, try again"]
                       ) from None


def run_download(api: Transport, args: argparse.Namespace) -> int:
    job_id = resolve_job(api, args.job)
    job = api.get(f"/v1/jobs/{job_id}")
    checkpoint = pick_checkpoint(api.get(f"/v1/jobs/{job_id}/checkpoints"), job,
                                 args.checkpoint, args.best)
    path = target_path(args.output, checkpoint["filename"], args.force)
    save_verified(api, f"/v1/jobs/{job_id}/checkpoints/{checkpoint['id']}/download",
                  checkpoint["sha256"], path)
    print(path)
    return 0
