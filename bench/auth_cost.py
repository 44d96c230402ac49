"""What checking an API key costs a request: the same GETs, one client at a time, against two
API processes on one database, one with TRAINDOCK_AUTH=off and one with it on (an admin key in
the header), interleaved so that both see the same machine. Prints the medians and the
difference.

    python bench/auth_cost.py [N]     # N requests per API and path (default 400)
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import Stack  # noqa: E402
from core.db import make_engine  # noqa: E402
from core.repo.api_keys import create_key  # noqa: E402
from core.settings import Settings  # noqa: E402

WARMUP = 50


def admin_token(database_url: str) -> str:
    engine = make_engine(Settings(database_url=database_url), pool_size=1)
    try:
        with Session(engine) as session:
            _, token = create_key(session, "bench", ["read", "submit", "admin"])
            session.commit()
            return token
    finally:
        engine.dispose()


def main(n: int) -> None:
    with Stack(broker="filesystem") as stack:
        off = stack.start_api()
        stack.env["TRAINDOCK_AUTH"] = "on"
        on = stack.start_api()
        token = admin_token(stack.database_url)
        spec = json.loads((ROOT / "examples" / "digits-mlp.json").read_text())
        key = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=off.url) as plain, \
                httpx.Client(base_url=on.url, headers=key) as keyed:
            job = plain.post("/v1/jobs", json=spec).json()["id"]
            for path, label in ((f"/v1/jobs/{job}", "GET /v1/jobs/{id}"),
                                ("/v1/jobs?limit=20", "GET /v1/jobs?limit=20")):
                times: dict[str, list[float]] = {"off": [], "on": []}
                for i in range(WARMUP + n):
                    for name, client in (("off", plain), ("on", keyed)):
                        began = time.perf_counter()
                        response = client.get(path)
                        elapsed = time.perf_counter() - began
                        assert response.status_code == 200, response.text
                        if i >= WARMUP:
                            times[name].append(elapsed * 1000)
                off_ms, on_ms = (statistics.median(times[k]) for k in ("off", "on"))
                print(f"{label}: median {off_ms:.2f} ms without keys, {on_ms:.2f} ms with a "
                      f"key (+{on_ms - off_ms:.2f} ms), {n} requests each")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
