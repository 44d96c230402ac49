"""What a diagnosis costs the job list and the job read: `GET /v1/jobs?limit=100` over 100 jobs
whose summaries hold a three-finding diagnosis, beside 100 jobs with none, and
`GET /v1/jobs/{id}` of one of each, through a real API process over HTTP. The list serves
only a count of the findings; the body it would have been with the diagnosis inside each
summary is printed beside it.

    python bench/diagnosis_list.py            # 200 requests of each
    python bench/diagnosis_list.py --quick    # 30
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import httpx
from report import header, median, p99, table
from stack import ROOT, Stack

JOBS = 100
FINDING = {
    "severity": "warning", "since_step": 120,
    "evidence": "first/last gradient-norm ratio 3.1e-07 (layers.0 1.2e-08, layers.14 0.039) at "
                "steps 100-400 while val_loss stayed at 2.30 (ln 10 = 2.30)",
    "data": {"ratio": 3.1e-07, "first": 1.2e-08, "last": 0.039, "val_loss": 2.30},
    "actions": [{"field": "model.init", "value": {"type": "he_normal"},
                 "why": "He initialisation keeps ReLU activations' variance through depth"},
                {"field": "optimizer.lr", "value": 0.001,
                 "why": "a smaller step while the gradients recover"}],
}
DIAGNOSIS = {"final": True, "step": 400, "findings": [
    FINDING | {"name": name} for name in ("vanishing_gradients", "stuck_at_chance",
                                          "saturation")]}
SUMMARY = {"latest": {"train_loss": 2.30, "val_loss": 2.30, "val_accuracy": 0.1},
           "best": {"val_loss": {"value": 2.3, "step": 400, "epoch": 5}}}


def insert_jobs(stack: Stack) -> tuple[str, str]:
    from sqlalchemy import update

    from core.db import Database
    from core.repo import jobs as job_repo
    from core.settings import Settings
    from core.tables import Job

    spec = json.loads((ROOT / "examples" / "digits-mlp.json").read_text())
    db = Database.connect(Settings(database_url=stack.database_url), pool_size=1)
    ids = {}
    with db.transaction() as session:
        for state, summary in (("failed", SUMMARY | {"diagnosis": DIAGNOSIS}),
                               ("succeeded", SUMMARY)):
            for _ in range(JOBS):
                job = job_repo.create_job(session, name="bench", spec=spec, max_attempts=1,
                                          model_summary={}, total_steps=1000)
                session.execute(update(Job).where(Job.id == job.id)
                                .values(state=state, summary=summary, attempt=1))
                ids[state] = str(job.id)
    db.engine.dispose()
    return ids["failed"], ids["succeeded"]


def timed_gets(http: httpx.Client, path: str, repeats: int) -> tuple[list[float], Any]:
    seconds, body = [], None
    for i in range(repeats + 10):
        began = time.perf_counter()
        response = http.get(path)
        elapsed = time.perf_counter() - began
        response.raise_for_status()
        body = response.content
        if i >= 10:
            seconds.append(elapsed)
    return seconds, body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    repeats = 30 if parser.parse_args().quick else 200
    with Stack() as stack:
        stack.start_api()
        diagnosed, plain = insert_jobs(stack)
        rows = []
        with httpx.Client(base_url=stack.api_url, timeout=30) as http:
            for label, path in (
                    ("list, 100 diagnosed jobs", "/v1/jobs?state=failed&limit=100"),
                    ("list, 100 jobs without", "/v1/jobs?state=succeeded&limit=100"),
                    ("read, a diagnosed job", f"/v1/jobs/{diagnosed}"),
                    ("read, a job without", f"/v1/jobs/{plain}")):
                seconds, body = timed_gets(http, path, repeats)
                rows.append([label, median(seconds) * 1000, p99(seconds) * 1000, len(body)])
        inside = len(json.dumps(DIAGNOSIS, separators=(",", ":"))) + len(',"diagnosis":')
        print(header("The diagnosis's cost to GET /v1/jobs and GET /v1/jobs/{id}"))
        print(table(["request", "median ms", "p99 ms", "bytes"], rows))
        print(f"\nEach diagnosis is {inside} bytes as stored; inside every summary, the list "
              f"of 100 would be {rows[0][3] + JOBS * inside:,} bytes instead of "
              f"{rows[0][3]:,}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
