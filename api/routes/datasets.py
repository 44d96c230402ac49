"""/v1/datasets: upload or import a dataset; list, describe and delete them (built-in ones are
listed and described too)."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from api import dataset_ingest
from api.auth import Principal, PrincipalDep
from api.bounded_ingest import ClientGone, child_request, parse_in_child
from api.dataset_schemas import (
    BuiltinDatasetOut,
    DatasetImport,
    UploadedDatasetOut,
    UploadOptions,
    builtin_out,
)
from api.deps import SessionDep, SettingsDep
from api.schemas import ValidationErrorOut
from api.uploads import receive_multipart
from api.url_import import check_url, download, filename_of, import_parse_error, public_url
from core import datasets
from core.net_policy import NetPolicy
from core.repo import datasets as dataset_repo
from core.settings import Settings
from core.tables import Dataset
from core.uploads.parsed import UploadError

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"model": ValidationErrorOut, "description": "the name is taken, or a job uses it"},
    413: {"model": ValidationErrorOut, "description": "over TRAINDOCK_MAX_UPLOAD_BYTES, "
          "TRAINDOCK_MAX_UNPACKED_BYTES, TRAINDOCK_MAX_PARSED_BYTES, "
          "TRAINDOCK_INGEST_MEMORY_MB or TRAINDOCK_MAX_STORED_BYTES_PER_OWNER"},
    415: {"description": "neither multipart/form-data nor application/json"},
    422: {"model": ValidationErrorOut, "description": "the field or file member to change"},
}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file", "name"],
                "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": "the data file; its name's suffix tells the format"},
                    **UploadOptions.model_json_schema()["properties"],
                },
            }},
            "application/json": {"schema": DatasetImport.model_json_schema()},
        },
    }
}


def dataset_out(row: Dataset) -> UploadedDatasetOut:
    return UploadedDatasetOut.model_validate(row, from_attributes=True)


def _http_error(exc: UploadError) -> HTTPException:
    return HTTPException(exc.status, [{"field": exc.field, "message": str(exc),
                                       "type": "upload"}])


def _find(session, key: str, principal: Principal) -> Dataset:
    row = dataset_repo.get_by_id_or_name(session, key, principal.owner)
    if row is None or not principal.may_see(row.owner):  # another owner's: as if none
        raise HTTPException(404, f"no dataset with id or name {key!r}; GET /v1/datasets "
                            "lists them")
    return row


@router.get("", response_model=list[UploadedDatasetOut | BuiltinDatasetOut])
def list_datasets(session: SessionDep, principal: PrincipalDep
                  ) -> list[UploadedDatasetOut | BuiltinDatasetOut]:
    """The caller's uploaded datasets (an admin: everyone's), newest first, then the built-in
    ones by name."""
    uploaded = [dataset_out(row)
                for row in dataset_repo.list_datasets(session, principal.owner_filter)]
    return [*uploaded, *(builtin_out(name) for name in sorted(datasets.BUILTINS))]


@router.get("/{key}", response_model=UploadedDatasetOut | BuiltinDatasetOut)
def get_dataset(key: str, session: SessionDep, principal: PrincipalDep
                ) -> UploadedDatasetOut | BuiltinDatasetOut:
    """A built-in dataset by name, or an uploaded one by id or name."""
    if key in datasets.BUILTINS:
        return builtin_out(key)
    return dataset_out(_find(session, key, principal))


@router.delete("/{key}", status_code=204, responses={409: ERRORS[409]})
def delete_dataset(key: str, session: SessionDep, settings: SettingsDep,
                   principal: PrincipalDep) -> Response:
    """Delete an uploaded dataset (by id or name), and its stored arrays unless another
    dataset holds the same content. 409 while a queued or running job uses it."""
    if key in datasets.BUILTINS:
        raise _http_error(UploadError("id", f"{key!r} is built in; it cannot be deleted", 409))
    try:
        dataset_ingest.delete(session, settings, _find(session, key, principal))
    except UploadError as exc:
        raise _http_error(exc) from None
    return Response(status_code=204)


@router.post("", status_code=201, response_model=UploadedDatasetOut, responses=ERRORS,
             openapi_extra=UPLOAD_BODY)
async def create_dataset(request: Request, session: SessionDep, settings: SettingsDep,
                         principal: PrincipalDep) -> UploadedDatasetOut:
    """Upload a file (multipart/form-data: `file`, `name`, options) or import one from a URL
    (JSON: `url`, `name`, options). The body is streamed to disk, never held in memory."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/json"):
        raise HTTPException(415, "send multipart/form-data (an upload: file, name, ...) or "
                            "application/json (an import: url, name, ...)")
    path = _temp_path(settings)
    work_dir, tmp_dir = path.with_name(f"{path.name}.work"), settings.dataset_dir / (
        f".tmp-{path.stem}")
    try:
        # Full already: refused before the body is read, not after.
        await run_in_threadpool(_check_room, session, settings, principal.owner)
        if kind == "multipart/form-data":
            options, filename, source = await _receive_upload(request, settings, path)
        else:
            options, filename, source = await _receive_import(request, session, settings, path,
                                                              principal.owner)
        await run_in_threadpool(_check_name, session, options.name, principal.owner)
        work_dir.mkdir()
        child = child_request(settings, path, filename, dataset_ingest.child_options(options),
                              work_dir, tmp_dir)
        try:
            parsed = await parse_in_child(settings, child, request.is_disconnected)
        except UploadError as exc:
            if "url" in source:  # never echo the remote file's content (column names, ...)
                raise import_parse_error(exc, source["url"]) from None
            raise
        row = await run_in_threadpool(dataset_ingest.record, session, settings, parsed,
                                      tmp_dir, options, source, principal.owner)
    except UploadError as exc:
        raise _http_error(exc) from None
    except (ClientDisconnect, ClientGone):
        raise HTTPException(400, "the client hung up before the upload was complete") from None
    finally:
        path.unlink(missing_ok=True)
        shutil.rmtree(work_dir, ignore_errors=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return dataset_out(row)


def _temp_path(settings: Settings) -> Path:
    """Where the body lands: under DATA_DIR, named by the server (never by the client)."""
    folder = settings.data_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{uuid.uuid4().hex}.part"


def _options(model: type[UploadOptions], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()],
                                     body=data) from None


async def _receive_upload(request: Request, settings: Settings, path: Path
                          ) -> tuple[UploadOptions, str, dict[str, Any]]:
    received = await receive_multipart(request.headers["content-type"], request.stream(), path,
                                       settings.max_upload_bytes)
    fields: dict[str, Any] = dict(received.fields)
    size = fields.get("image_size")
    if isinstance(size, str) and re.fullmatch(r"\s*\d+\s*[x,]\s*\d+\s*", size):
        fields["image_size"] = re.split(r"[x,]", size)  # "32x48": height x width
    options = _options(UploadOptions, fields)
    filename = (received.filename or "")[-255:]
    return options, filename, {"filename": filename}


async def _receive_import(request: Request, session, settings: Settings, path: Path,
                          owner: str) -> tuple[UploadOptions, str, dict[str, Any]]:
    # The API's body limit does not cover this route (uploads are large): JSON is capped here.
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > settings.max_spec_bytes:
            raise HTTPException(413, f"request body is larger than {settings.max_spec_bytes} "
                                "bytes; an import names a URL and a few options")
    try:
        document = json.loads(body)
    except RecursionError:
        raise HTTPException(422, [{"field": "body", "type": "json_invalid",
                                   "message": "body: nested too deeply; an import is a flat "
                                   "JSON object {url, name, ...}"}]) from None
    except ValueError as exc:
        raise HTTPException(422, [{"field": "body", "type": "json_invalid",
                                   "message": f"body: not valid JSON ({exc})"}]) from None
    if not isinstance(document, dict):
        raise HTTPException(422, [{"field": "body", "type": "dict_type",
                                   "message": "body: must be a JSON object {url, name, ...}"}])
    data = _options(DatasetImport, document)
    check_url(data.url)
    await run_in_threadpool(_check_name, session, data.name, owner)
    policy = NetPolicy.from_settings(settings.url_import_allow_private,
                                     settings.url_import_allow_networks)
    await download(data.url, path, settings.max_upload_bytes, settings.import_timeout_s,
                   policy, settings.import_deadline_s)
    return data, filename_of(data.url), {"url": public_url(data.url)}


def _check_room(session, settings: Settings, owner: str) -> None:
    try:
        dataset_ingest.check_room(session, settings, owner)
    finally:
        session.rollback()


def _check_name(session, name: str, owner: str) -> None:
    dataset_ingest.check_name_free(session, name, owner)
    session.rollback()
