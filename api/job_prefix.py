"""The answer to `/v1/jobs/{job_id}...` when `job_id` is not a full id: most often the start of
one, copied from `traindock ls` or the dashboard, so the answer names the job(s) it starts."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.auth import request_principal
from core.repo.job_ids import id_range, jobs_with_id_prefix

SHOWN = 5  # candidates named in the message


def _field_error(message: str, kind: str) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": [
        {"field": "path.job_id", "type": kind, "message": f"path.job_id: {message}"},
    ]})


async def not_a_full_job_id(request: Request, text: str) -> JSONResponse:
    """422 naming the job `text` starts (or the several it starts), 404 when it starts none,
    422 when it cannot start a job id at all."""
    if id_range(text) is None:
        return _field_error(f"{text!r} is not a job id: a job id is a UUID such as "
                            "3f2a6c1e-8b0d-4c5e-9f21-0a1b2c3d4e5f (`GET /v1/jobs` lists them)",
                            "uuid_parsing")

    principal = request_principal(request)
    if not principal.scopes:  # the request was refused before it was identified
        return JSONResponse(status_code=404, content={"detail": f"no job id starts with {text!r}"})

    def lookup() -> list[str]:
        with request.app.state.sessionmaker() as session:
            return [str(job.id) for job in jobs_with_id_prefix(session, text, SHOWN + 1,
                                                               principal.owner_filter)]

    ids = await run_in_threadpool(lookup)
    if not ids:
        return JSONResponse(status_code=404,
                            content={"detail": f"no job id starts with {text!r}"})
    if len(ids) == 1:
        return _field_error(f"{text!r} is not a full job id: it is the start of job {ids[0]}; "
                            "use the full id", "job_id_prefix")
    shown = ", ".join(ids[:SHOWN]) + (", …" if len(ids) > SHOWN else "")
    return _field_error(f"{text!r} is not a full job id: it is the start of several "
                        f"({shown}); use the full id of one", "job_id_prefix")
