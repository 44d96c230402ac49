"""/v1/jobs/{id}/predict: run a job's checkpoint on inputs sent as JSON arrays, rows of named
features, or a file (CSV, .npz, PNG/JPEG images).

The API picks the checkpoint (one query) and hands the body, unparsed, to the prediction
server (inference/server.py), a child process that parses, checks and runs it: the event
loop only forwards bytes, from a worker thread."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.auth import Principal, PrincipalDep
from api.deps import JobDep, SessionDep, SettingsDep
from api.predict_schemas import PREDICT_BODY, PredictInputsOut, PredictOut
from api.schemas import ValidationErrorOut
from core import datasets
from core.repo import checkpoints as checkpoint_repo
from core.repo import datasets as dataset_repo
from core.repo import jobs as job_repo
from core.settings import Settings
from core.specs.dataset import DatasetSpec
from core.tables import Job
from inference import job_bundle
from inference.client import PredictionServer, ServerError
from inference.inputs import DEFAULT_IMAGE_VALUE_MAX, IMAGE_VALUE_MAX

router = APIRouter(prefix="/v1/jobs", tags=["predict"])


def input_error(status: int, field: str, message: str) -> HTTPException:
    """A 413, 415 or 422 shaped as every route's: one {field, type, message} per problem,
    the message starting with the field."""
    return HTTPException(status, [{"field": field, "type": "predict_input",
                                   "message": f"{field}: {message}"}])

FILE_KINDS = {".csv": "csv", ".npz": "npz", ".png": "image", ".jpg": "image",
              ".jpeg": "image"}
IMAGE_BUILTINS = frozenset({"digits"})
DATASET_INFO_CACHE = 256
CheckpointQuery = Annotated[str, Query(
    pattern=r"^(best|last|[0-9]{1,18})$",
    description="best (the monitored metric's best; the last one when none recorded it), "
    "last, or a step number")]


_making_server = threading.Lock()


def prediction_server(request: Request) -> PredictionServer:
    """This API process's prediction server, made on first use (its process starts then)."""
    state = request.app.state
    with _making_server:  # two first requests at once must not start two servers
        return getattr(state, "prediction_server", None) or _new_server(state)


def _new_server(state: Any) -> PredictionServer:
    settings: Settings = state.settings
    server = PredictionServer(int(settings.predict_cache_mb * 2**20), settings.predict_max_rows,
                              settings.predict_threads, settings.predict_timeout_s)
    state.prediction_server = server
    return server


def job_dataset(request: Request, session: Session, job: Job) -> datasets.DatasetInfo:
    """The description of the dataset a job trained on, kept per API process: a job's dataset
    is a fixed version (built-in options, or an upload's sha256), so after the first request
    a prediction costs one query (the checkpoint rows), not two."""
    state = request.app.state
    if getattr(state, "predict_datasets", None) is None:
        state.predict_datasets = {}
    known: dict[str, datasets.DatasetInfo] = state.predict_datasets
    key = json.dumps(job.spec["dataset"], sort_keys=True)
    if key not in known:
        if len(known) >= DATASET_INFO_CACHE:
            known.pop(next(iter(known)))
        known[key] = job_bundle.dataset_info(session, job.spec,
                                             request.app.state.settings.dataset_dir)
    return known[key]


async def read_inputs(request: Request, max_files: int) -> tuple[str, bytes,
                                                                 list[dict[str, Any]] | None]:
    """(kind, payload, files): the JSON body as sent, or the files' bytes one after another
    with their names and sizes."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("", "application/json"):
        return "json", await request.body(), None
    if kind != "multipart/form-data":
        raise input_error(415, "body", f"content-type {kind!r} is not taken; send "
                          "application/json ({\"inputs\": ...} or {\"rows\": ...}) or "
                          "multipart/form-data with a file field")
    form = await request.form(max_files=max_files, max_fields=16)
    uploads = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
    if not uploads:
        raise input_error(422, "file", "the form has no file field; send the inputs as a "
                          "file named file (.csv, .npz, .png or .jpg)")
    kinds = set()
    for upload in uploads:
        suffix = Path(upload.filename or "").suffix.lower()
        if suffix not in FILE_KINDS:
            raise input_error(422, "file", f"cannot tell what {upload.filename!r} holds from "
                              "its name; send a .csv, .npz, .png, .jpg or .jpeg file")
        kinds.add(FILE_KINDS[suffix])
    if len(kinds) > 1 or (len(uploads) > 1 and kinds != {"image"}):
        raise input_error(422, "file", "send one .csv or .npz file, or one or more images, "
                          "not a mix")
    parts = [await upload.read() for upload in uploads]
    files = [{"name": u.filename, "size": len(p)} for u, p in zip(uploads, parts, strict=True)]
    return kinds.pop(), b"".join(parts), files


def run_prediction(request: Request, principal: Principal, job_id: uuid.UUID, which: str,
                   kind: str, payload: bytes, files: list[dict[str, Any]] | None
                   ) -> dict[str, Any]:
    """One thread for the whole request: the job (404 for another owner's, as JobDep), its
    checkpoint and dataset from one session that is closed before the prediction server is
    asked, then the server's answer. A second thread hop and session cost as much as the model
    itself on the single-row path (bench/predict_latency.py)."""
    settings: Settings = request.app.state.settings
    started = time.perf_counter()
    try:
        with request.app.state.sessionmaker() as session:
            job = job_repo.get_job(session, job_id)
            if job is None or not principal.may_see(job.owner):
                raise HTTPException(404, f"no job with id {job_id}")
            row = job_bundle.pick_checkpoint(session, job, job_bundle.parse_choice(which))
            info = job_dataset(request, session, job)
            session.expunge_all()  # read; closing the session ends its transaction
        path = Path(row.path).resolve()
        if not path.is_relative_to(settings.checkpoint_dir.resolve()):
            raise job_bundle.FileGone(f"checkpoint at step {row.step}'s file is no longer on "
                                      "disk; ask for another checkpoint")
    except job_bundle.BundleError as exc:  # 404, 409, 410: a sentence, as other routes'
        raise HTTPException(exc.status, f"{exc.field}: {exc.message}" if exc.field
                            else exc.message) from None
    located = job_bundle.Located(job_id=str(job_id), checkpoint_id=row.id, path=str(path),
                                 sha256=row.sha256, step=row.step,
                                 metrics=dict(row.metrics or {}), info=info)
    header = {"located": located.as_dict(), "kind": kind, "files": files}
    asked = time.perf_counter()
    try:
        reply = prediction_server(request).request(header, payload)
    except ServerError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    if "error" in reply:
        error = reply["error"]
        if int(error["status"]) in (413, 422):
            raise input_error(int(error["status"]), error["field"], error["message"])
        raise HTTPException(int(error["status"]), f"{error['field']}: {error['message']}")
    answer = reply["ok"]
    timing = {"db": asked - started, "server": time.perf_counter() - asked,
              "model": answer["seconds"]}
    return {"predictions": answer["predictions"], "task": answer["task"],
            "checkpoint": {"id": row.id, "step": row.step, "epoch": row.epoch,
                           "sha256": row.sha256, "cached": answer["cached"]},
            "_timing": timing}


@router.post(
    "/{job_id}/predict", response_model=PredictOut, openapi_extra=PREDICT_BODY,
    responses={409: {"description": "the job has no checkpoint yet"},
               413: {"model": ValidationErrorOut,
                     "description": "too many rows (TRAINDOCK_PREDICT_MAX_ROWS)"},
               415: {"model": ValidationErrorOut,
                     "description": "neither JSON nor a multipart form"},
               422: {"model": ValidationErrorOut,
                     "description": "inputs the model cannot take; each names its field"}},
)
async def predict(job_id: uuid.UUID, request: Request, settings: SettingsDep,
                  principal: PrincipalDep, checkpoint: CheckpointQuery = "best"
                  ) -> JSONResponse:
    """Predictions of the job's checkpoint for the rows sent. JSON: `{"inputs": [[...],
    ...]}` (each row flat or in the input shape) or `{"rows": [{"feature": value, ...}]}`
    (tabular datasets with feature names). Or multipart/form-data with `file`: a CSV whose
    header names the features, an .npz holding `x`, or PNG/JPEG images (image datasets;
    resized and made grayscale or RGB as an image upload is). Needs only the read scope."""
    kind, payload, files = await read_inputs(request, settings.predict_max_rows)
    answer = await run_in_threadpool(run_prediction, request, principal, job_id, checkpoint,
                                     kind, payload, files)
    # Where the time went (the browser's devtools and bench/predict_latency.py read it): the
    # rows read, the prediction server's round trip, and inside it parsing and the model.
    timing = answer.pop("_timing")
    return JSONResponse(answer, headers={"Server-Timing": ", ".join(
        f"{name};dur={seconds * 1000:.3f}" for name, seconds in timing.items())})


@router.get("/{job_id}/predict", response_model=PredictInputsOut)
def predict_inputs(job: JobDep, session: SessionDep) -> PredictInputsOut:
    """What POST /v1/jobs/{id}/predict takes for this job: the input shape, feature and class
    names, and whether inputs are images (the dashboard's "Try it" panel asks this)."""
    ds = DatasetSpec.model_validate(job.spec["dataset"])
    image = ds.is_builtin and ds.name in IMAGE_BUILTINS
    if ds.is_builtin:
        info = datasets.describe(ds.name, ds.options())
    else:
        row = dataset_repo.get(session, ds.id) if ds.id is not None else None
        if row is None:
            raise HTTPException(410, f"job {job.id}'s dataset is no longer stored")
        image = row.format == "images"
        info = datasets.describe_stored({
            "id": row.id, "name": row.name, "sha256": ds.sha256 or row.sha256, "task": row.task,
            "input_shape": row.input_shape, "target_shape": row.target_shape,
            "num_classes": row.num_classes, "class_names": row.class_names,
            "splits": row.splits, "feature_names": getattr(row, "feature_names", None),
        })
    has_checkpoint = bool(checkpoint_repo.latest_checkpoint(session, job.id))
    feature_names = getattr(info, "feature_names", None)
    class_names = list(info.class_names) if info.class_names else (
        [str(i) for i in range(info.num_classes)] if info.num_classes else None)
    value_max = IMAGE_VALUE_MAX.get(ds.name or "", DEFAULT_IMAGE_VALUE_MAX) if image else None
    return PredictInputsOut(
        task=info.task, input="image" if image else "table" if feature_names else "array",
        input_shape=list(info.input_shape),
        feature_names=list(feature_names) if feature_names else None,
        class_names=class_names, image_value_max=value_max, has_checkpoint=has_checkpoint)
