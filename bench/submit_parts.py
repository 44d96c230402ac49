"""Where a request's time goes: the parts of `POST /v1/jobs` and `GET /v1/jobs/{id}` timed one
by one in this process, beside the whole request sent through the same app in-process
(Starlette's TestClient: routing, dependencies, the thread-pool hop, response validation and
serialisation, no sockets). "rest" is the whole minus the parts: the framework's share.

Sequential, one request at a time, on a database and a private Redis of the run's own.

    python bench/submit_parts.py            # 300 repeats of each, about 1 minute
    python bench/submit_parts.py --quick    # 30 repeats
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from report import header, median, p99, table
from stack import Stack

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 10


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    began = time.perf_counter()
    value = fn()
    return time.perf_counter() - began, value


def measure(stack: Stack, repeats: int) -> dict[str, list[float]]:
    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.schemas import JobOut
    from core.jobspec import JobSpec, validate_job
    from core.repo import jobs as job_repo
    from core.settings import Settings

    settings = Settings(database_url=stack.database_url, broker_url=stack.broker_url,
                        data_dir=stack.data_dir, auth=False)
    app = create_app(settings)
    body = (ROOT / "examples" / "digits-mlp.json").read_bytes()
    parts: dict[str, list[float]] = {}

    def note(name: str, seconds: float, i: int) -> None:
        if i >= WARMUP:
            parts.setdefault(name, []).append(seconds)

    with TestClient(app) as http:
        for i in range(WARMUP + repeats):
            t_parse, spec = timed(lambda: JobSpec.model_validate_json(body))
            t_validate, checked = timed(lambda spec=spec: validate_job(spec, settings, None))
            t_dump, document = timed(lambda c=checked: c.spec.model_dump(mode="json"))
            with app.state.sessionmaker() as session:
                def insert(s=session, c=checked, d=document):
                    job = job_repo.create_job(
                        s, name=c.spec.display_name, spec=d, max_attempts=3,
                        model_summary=c.model_report(), total_steps=c.estimated_steps)
                    s.commit()
                    return job
                t_insert, job = timed(insert)
            t_publish, _ = timed(lambda j=job: app.state.publisher.publish(str(j.id)))
            t_out, _ = timed(lambda j=job: JobOut.of(j).model_dump_json())
            t_post, response = timed(lambda: http.post(
                "/v1/jobs", content=body, headers={"content-type": "application/json"}))
            assert response.status_code == 201, response.text
            job_id = uuid.UUID(response.json()["id"])

            def read(job_id=job_id):
                with app.state.sessionmaker() as session:
                    return job_repo.get_job(session, job_id)
            t_read, row = timed(read)
            t_read_out, _ = timed(lambda r=row: JobOut.of(r).model_dump_json())
            t_get, response = timed(lambda j=job_id: http.get(f"/v1/jobs/{j}"))
            assert response.status_code == 200, response.text
            t_health, _ = timed(lambda: http.get("/healthz"))
            post_parts = t_parse + t_validate + t_dump + t_insert + t_publish + t_out
            for name, seconds in (
                ("POST: parse JSON into JobSpec", t_parse),
                ("POST: validate_job (meta-device build)", t_validate),
                ("POST: spec.model_dump", t_dump),
                ("POST: INSERT + COMMIT", t_insert),
                ("POST: publish to Redis", t_publish),
                ("POST: JobOut + JSON", t_out),
                ("POST: rest (framework)", t_post - post_parts),
                ("POST: whole request", t_post),
                ("GET: session + SELECT by id", t_read),
                ("GET: JobOut + JSON", t_read_out),
                ("GET: rest (framework)", t_get - t_read - t_read_out),
                ("GET: whole request", t_get),
                ("GET /healthz: whole request", t_health),
            ):
                note(name, seconds, i)
    app.state.engine.dispose()
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 repeats")
    args = parser.parse_args()
    repeats = 30 if args.quick else 300
    os.chdir(ROOT)
    with Stack(broker="redis") as stack:
        parts = measure(stack, repeats)
    print(header(f"Request parts, in-process, sequential ({repeats} repeats, examples/"
                 "digits-mlp.json)"))
    post, get = median(parts["POST: whole request"]), median(parts["GET: whole request"])
    rows = [[name, median(xs) * 1000, p99(xs) * 1000,
             median(xs) / (post if name.startswith("POST") else get)]
            for name, xs in parts.items()]
    print(table(["part", "p50 ms", "p99 ms", "share of whole (p50)"], rows, fmt=".3f"))
    print(f"\nOne core's ceiling from the p50s: POST {1 / post:.0f}/s, GET {1 / get:.0f}/s "
          "(targets 1000/s and 3000/s on 2 cores). TestClient's own cost is in \"rest\".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
