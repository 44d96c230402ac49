"""GET /v1/jobs/{id}/export: a checkpoint as ONNX, a torch.export program or safetensors, a
file to download. Made once per checkpoint and format by a child process
(api/export_runner.py), then served from the cache beside the checkpoints
(inference/export_cache.py)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from api.auth import request_principal
from api.deps import valid_job
from api.export_runner import ExportFailed, export_in_child
from api.routes.checkpoints import download_name
from api.routes.logs import MessageOut
from api.schemas import ValidationErrorOut
from core.checkpoint_files import sha256_of
from core.repo import checkpoints as checkpoint_repo
from inference.export_cache import MEDIA_TYPES, SUFFIXES, cached_path, prune
from inference.job_bundle import BundleError, Located, locate, parse_choice

router = APIRouter(prefix="/v1/jobs", tags=["exports"])

ExportFormat = Literal["onnx", "pt2", "safetensors"]
FILE_TYPES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
              "application/zip": {"schema": {"type": "string", "format": "binary"}}}


def _problem(status: int, field: str | None, message: str) -> HTTPException:
    if field is None:
        return HTTPException(status, message)
    return HTTPException(status, [{"field": field, "type": "export",
                                   "message": f"{field}: {message}"}])


@router.get(
    "/{job_id}/export",
    response_class=FileResponse,
    responses={
        200: {"content": FILE_TYPES, "description": "the exported file (docs/models.md)"},
        404: {"model": MessageOut, "description": "no such job, or no checkpoint at that step"},
        409: {"model": ValidationErrorOut,
              "description": "the job has no checkpoint yet: the message says what to wait for"},
        410: {"model": MessageOut, "description": "the checkpoint's file or the job's dataset "
              "is no longer stored"},
        422: {"model": ValidationErrorOut, "description": "the query parameter to change, or "
              "the layer (model.layers[i]) the format cannot express"},
        503: {"model": MessageOut, "description": "the export passed its time limit"},
    },
)
async def export_checkpoint(
    job_id: uuid.UUID,
    request: Request,
    format: Annotated[ExportFormat, Query(
        description="onnx: an ONNX graph (dynamic batch); pt2: a torch.export program for "
        "torch.export.load; safetensors: a zip of model.safetensors and model.json")] = "onnx",
    checkpoint: Annotated[str, Query(
        max_length=40, description="'best' (the checkpoint list's best, else the last), "
        "'last', or a checkpoint's step")] = "best",
) -> FileResponse:
    """The job's checkpoint as a file that runs without traindock: the input normalisation
    is part of the graph (feed raw inputs), and the file's metadata holds the input shape,
    the task, the class and feature names and the metrics at that step."""
    settings = request.app.state.settings
    try:
        choice = parse_choice(checkpoint)
    except ValueError as exc:
        raise _problem(422, "checkpoint", str(exc)) from None
    factory = request.app.state.sessionmaker

    def prepare():
        with factory() as session:
            job = valid_job(job_id, session, request_principal(request))
            located = locate(session, job, choice, settings.checkpoint_dir,
                             settings.dataset_dir)
            kept = {row.sha256 for row in checkpoint_repo.list_checkpoints(session, job.id)}
        return job, located, kept

    try:
        job, located, kept = await run_in_threadpool(prepare)
    except BundleError as exc:
        # 409s name the field to change, as 422s do; 404s and 410s are a message
        field = exc.field if exc.status == 409 else None
        raise _problem(exc.status, field, exc.message) from None
    path = cached_path(settings.checkpoint_dir, job.id, located.sha256, format)
    if not path.is_file():
        await run_in_threadpool(prune, settings.checkpoint_dir, job.id, kept)
        await _export(settings, located, format, path)
    name = download_name(job, located.step).removesuffix(".pt") + SUFFIXES[format]
    digest = await run_in_threadpool(sha256_of, path)
    return FileResponse(path, media_type=MEDIA_TYPES[format], filename=name, headers={
        "X-Checksum-Sha256": digest,
        "X-Traindock-Step": str(located.step),
        "X-Traindock-Checkpoint-Sha256": located.sha256,
    })


async def _export(settings, located: Located, fmt: str, path: Path) -> None:
    request = {"located": located.as_dict(), "format": fmt, "path": str(path)}
    try:
        await export_in_child(settings, request)
    except ExportFailed as exc:
        raise _problem(exc.status, exc.field, exc.message) from None
