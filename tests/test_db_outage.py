"""Fault C: a PostgreSQL that hangs (its postmaster and backends stopped with SIGSTOP) made the
API wait for the whole outage and then answer 200. The API must answer 503 with Retry-After
within seconds, to new requests and to those already waiting, and recover by itself."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from core.embedded_postgres import start_embedded_postgres, stop_embedded_postgres
from core.migrate import upgrade
from core.settings import Settings
from tests.conftest import load_example, start_api

# On a busy 2-core machine: a 0.5 s probe, a 1.5 s answer timeout, and slack for the rest.
ANSWER_WITHIN_S = 10.0


@pytest.fixture
def own_postgres(pg_folder: Path) -> Iterator[tuple[str, psutil.Process]]:
    pgdata = pg_folder / "pg"
    server = start_embedded_postgres(pgdata)
    url = server.get_uri()
    upgrade(Settings(database_url=url).sqlalchemy_url)
    postmaster = psutil.Process(server.get_postmaster_info().process.pid)
    try:
        yield url, postmaster
    finally:
        _signal_all(postmaster, signal.SIGCONT)
        stop_embedded_postgres(server, pgdata)


def _signal_all(postmaster: psutil.Process, signum: int) -> None:
    for proc in [postmaster, *postmaster.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signum)


def _timed_get(url: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.get(url, timeout=60)
    return response, time.monotonic() - started


def test_a_hung_database_gets_503_within_seconds_and_the_api_recovers(
        own_postgres, service_env: dict[str, str], tmp_path: Path):
    database_url, postmaster = own_postgres
    env = service_env | {"TRAINDOCK_DATABASE_URL": database_url}
    api, base = start_api(env, tmp_path, TRAINDOCK_DB_PROBE_INTERVAL_S="0.5",
                          TRAINDOCK_DB_ANSWER_TIMEOUT_S="1.5")
    try:
        created = httpx.post(f"{base}/v1/jobs", json=load_example("digits-mlp"), timeout=30)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        reads = [f"{base}/v1/jobs/{job_id}",                # on the event loop
                 f"{base}/v1/jobs",                          # in the thread pool
                 f"{base}/v1/jobs/{job_id}/checkpoints",
                 f"{base}/healthz"]
        for url in reads:  # every pool holds a connection that will hang
            assert httpx.get(url, timeout=30).status_code == 200, url

        _signal_all(postmaster, signal.SIGSTOP)
        # Sent at once: they reach the routes before the watch has noticed, and wait there.
        with ThreadPoolExecutor(len(reads)) as pool:
            answers = list(pool.map(_timed_get, reads))
        for url, (response, seconds) in zip(reads, answers, strict=True):
            assert response.status_code == 503, (url, response.text)
            assert int(response.headers["retry-after"]) >= 1, url
            assert seconds < ANSWER_WITHIN_S, (url, seconds)
        assert "not answering" in answers[0][0].json()["detail"]
        assert answers[-1][0].json()["database"]["ok"] is False

        # Once the watch knows, a new request is answered without touching the database.
        response, seconds = _timed_get(reads[0])
        assert response.status_code == 503 and seconds < 1.0, (response.text, seconds)

        _signal_all(postmaster, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(httpx.get(url, timeout=30).status_code == 200 for url in reads):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the API did not recover:\n{api.log()[-3000:]}")
        assert httpx.get(reads[0], timeout=30).json()["state"] == "queued"
    finally:
        _signal_all(postmaster, signal.SIGCONT)
        api.stop()
