"""JOB arguments: a full job id, or a unique prefix of one (at least 6 characters)."""

from __future__ import annotations

import uuid

from cli.http import ApiError
from traindock.transport import Transport

MIN_PREFIX = 6
SHOWN = 10  # candidates listed when a prefix is ambiguous


def resolve_job(api: Transport, ref: str) -> str:
    """The full id of the job `ref` names, looked up among every job (`GET /v1/jobs?id_prefix=`,
    a range scan of the ids)."""
    ref = ref.strip().lower()
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        pass
    if len(ref) < MIN_PREFIX:
        raise ApiError([f"job {ref!r}: give the job id or at least {MIN_PREFIX} characters "
                        "of it (`traindock ls` lists them)"])
    jobs = api.get("/v1/jobs", id_prefix=ref, limit=SHOWN)["items"]
    matches = [job for job in jobs if job["id"].startswith(ref)]
    if len(matches) == 1:
        return matches[0]["id"]
    if not matches:
        raise ApiError([f"no job id starts with {ref!r}; `traindock ls` lists them"])
    lines = [f"{ref!r} is the start of {len(matches)}"
             f"{' or more' if len(matches) >= SHOWN else ''} job ids; give more characters:"]
    lines += [f"  {job['id']}  {job['state']:<10} {job['name']}" for job in matches]
    raise ApiError(["\n".join(lines)])
