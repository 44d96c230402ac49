"""GET /metrics on the real API, with a real worker training real jobs: the series move when a
job runs, HTTP requests are counted by route template, and a database that does not answer
costs the scrape a bounded wait and `traindock_database_up 0`, not a hang."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Service, free_port, load_example, start_api, wait_for_state

WORKER = "w1@test"


def scrape(client: httpx.Client) -> dict[tuple[str, tuple], float]:
    """Every sample, keyed by (name, sorted labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def small_job(name: str, epochs: int = 1) -> dict:
    spec = load_example("digits-mlp") | {"name": name}
    spec["training"] = spec["training"] | {"epochs": epochs}
    return spec


def test_series_move_when_a_job_runs(client: httpx.Client, worker) -> None:
    before = scrape(client)
    assert value(before, "traindock_database_up") == 1

    created = client.post("/v1/jobs", json=small_job("prometheus-one-epoch"))
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    wait_for_state(client, job_id, {"succeeded"})
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200

    # PostgreSQL publishes a backend's insert counts within a second or so of its commit.
    deadline = time.monotonic() + 20
    while True:
        after = scrape(client)
        written = (value(after, "traindock_metric_points_written_total")
                   - value(before, "traindock_metric_points_written_total"))
        if written > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    points = client.get(f"/v1/jobs/{job_id}/metrics").json()["series"]
    assert written >= sum(len(s["step"]) for s in points.values()) > 0

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("traindock_jobs", state="succeeded") >= 1
    assert moved("traindock_job_start_latency_seconds_count") >= 1
    assert moved("traindock_job_start_latency_seconds_sum") > 0
    assert moved("traindock_job_start_latency_seconds_bucket", le="+Inf") >= 1
    # HTTP requests, by route template: the job's own path is never a label.
    assert moved("traindock_http_requests_total", route="/v1/jobs", method="POST",
                 status="201") == 1
    assert moved("traindock_http_requests_total", route="/v1/jobs/{job_id}", method="GET",
                 status="200") >= 2
    assert moved("traindock_http_request_duration_seconds_count", route="/v1/jobs",
                 method="POST", status="201") == 1
    assert not any(job_id in str(labels) for _, labels in after)
    # The worker's heartbeat is a few seconds old at most.
    assert 0 <= value(after, "traindock_worker_heartbeat_age_seconds", worker=WORKER) < 30


def test_a_running_job_shows_its_speed_and_flush_age(client: httpx.Client, worker) -> None:
    created = client.post("/v1/jobs", json=small_job("prometheus-long", epochs=500))
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    try:
        deadline = time.monotonic() + 120
        while True:
            samples = scrape(client)
            if ("traindock_worker_samples_per_second", (("worker", WORKER),)) in samples:
                break
            assert time.monotonic() < deadline, "no training speed reported for the worker"
            time.sleep(0.5)
        assert value(samples, "traindock_worker_samples_per_second", worker=WORKER) > 0
        # Flushed every TRAINDOCK_METRIC_FLUSH_S (1 s) while it trains.
        assert 0 <= value(samples, "traindock_worker_metric_flush_age_seconds",
                          worker=WORKER) < 15
        assert value(samples, "traindock_jobs", state="running") >= 1
    finally:
        client.post(f"/v1/jobs/{job_id}/cancel")
        wait_for_state(client, job_id, {"cancelled", "succeeded", "failed"})


def test_queue_depth_counts_queued_jobs(fresh_database: str, service_env: dict[str, str],
                                        tmp_path: Path) -> None:
    """An API on a database of its own, which no worker claims from: what it queues stays."""
    api, base = start_api(service_env | {"TRAINDOCK_DATABASE_URL": fresh_database}, tmp_path)
    try:
        with httpx.Client(base_url=base, timeout=30) as own:
            before = scrape(own)
            assert value(before, "traindock_queue_depth") == 0
            assert value(before, "traindock_queue_oldest_seconds") == 0
            for n in range(2):
                assert own.post("/v1/jobs", json=small_job(f"queued-{n}")).status_code == 201
            time.sleep(0.2)
            after = scrape(own)
    finally:
        api.stop()
    assert value(after, "traindock_queue_depth") == 2
    assert value(after, "traindock_jobs", state="queued") == 2
    assert value(after, "traindock_queue_oldest_seconds") > 0
    assert value(after, "traindock_job_start_latency_seconds_count") == 0
    states = {labels[0][1] for name, labels in after if name == "traindock_jobs"}
    assert states == {"queued", "running", "succeeded", "failed", "cancelled", "pruned"}


def test_request_id_is_echoed_or_made(client: httpx.Client) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123.x"})
    assert given.headers["x-request-id"] == "abc-123.x"
    made = client.get("/v1/jobs")
    assert len(made.headers["x-request-id"]) == 32
    assert made.headers["x-request-id"] != client.get("/v1/jobs").headers["x-request-id"]
    # The 404 of a path no route has carries it too, and is counted as unmatched.
    assert client.get("/no/such/path").headers["x-request-id"]
    assert value(scrape(client), "traindock_http_requests_total", route="unmatched",
                 method="GET", status="404") >= 1


def test_an_unknown_method_is_counted_as_other(client: httpx.Client) -> None:
    assert client.request("PROPFIND", "/v1/jobs").status_code == 405
    samples = scrape(client)
    assert value(samples, "traindock_http_requests_total", route="/v1/jobs", method="other",
                 status="405") >= 1
    assert not any(("method", "PROPFIND") in labels for _, labels in samples)


def test_a_bad_request_id_is_refused_naming_the_header(client: httpx.Client) -> None:
    response = client.get("/v1/jobs", headers={"X-Request-ID": "x" * 129})
    assert response.status_code == 400
    assert "X-Request-ID" in response.json()["detail"]
    assert len(response.headers["x-request-id"]) == 32  # a fresh one, not the bad one


@pytest.fixture
def silent_database() -> Iterator[str]:
    """A 'PostgreSQL' that accepts connections and never answers: the hang TCP cannot see."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"postgresql://postgres@127.0.0.1:{server.getsockname()[1]}/none"


def test_a_silent_database_does_not_hang_the_scrape(
        silent_database: str, service_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = service_env | {"TRAINDOCK_DATABASE_URL": silent_database,
                         "TRAINDOCK_METRICS_QUERY_TIMEOUT_S": "1",
                         "TRAINDOCK_DB_PROBE_INTERVAL_S": "60"}  # the scrape's own bound
    api = Service([sys.executable, "-m", "cli.main", "api", "--port", str(port)], env,
                  tmp_path / "api.log")
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 60
        while True:
            try:
                started = time.monotonic()
                httpx.get(url, timeout=30)  # so that the next one has a request to count
                started = time.monotonic()
                response = httpx.get(url, timeout=30)
                took = time.monotonic() - started
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, api.log()[-3000:]
                time.sleep(0.2)
        assert response.status_code == 200
        assert took < 5, took
        samples = {s.name: s.value for f in text_string_to_metric_families(response.text)
                   for s in f.samples}
        assert samples["traindock_database_up"] == 0
        assert "traindock_jobs" not in samples
        assert "traindock_http_requests_total" in samples  # the API's own series are there
    finally:
        api.stop()


def test_several_api_processes_count_as_one(service_env: dict[str, str], tmp_path: Path) -> None:
    """`traindock api --workers 2`: each scrape is answered by one process and counts the
    requests both served (cli/serve.py sets PROMETHEUS_MULTIPROC_DIR)."""
    port = free_port()
    env = {k: v for k, v in service_env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    api = Service([sys.executable, "-m", "cli.main", "api", "--port", str(port),
                   "--workers", "2"], env, tmp_path / "api.log")
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=10).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, api.log()[-3000:]
            time.sleep(0.3)
        for _ in range(20):  # new connections, so that both processes take some
            with httpx.Client(base_url=base, timeout=30) as fresh:
                assert fresh.get("/v1/workers").status_code == 200
        counted, names = set(), set()
        for _ in range(6):
            with httpx.Client(base_url=base, timeout=30) as fresh:
                samples = scrape(fresh)
            counted.add(value(samples, "traindock_http_requests_total", route="/v1/workers",
                              method="GET", status="200"))
            names |= {name for name, _ in samples}
    finally:
        api.stop()
    assert counted == {20}, counted
    # The multi-process registry's sign: it has no process_* series (docs/integration.md).
    assert "process_cpu_seconds_total" not in names
    assert "traindock_database_up" in names
