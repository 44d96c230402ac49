"""Fast start by default, and the start-up breakdown on the job: a worker keeps a training
process warm unless TRAINDOCK_WARM_CHILD=false; each attempt stores where its seconds before
the first training step went (worker/startup.py), and GET /v1/jobs/{id}, the job page and
`traindock show --startup` show it. `traindock up` with its warm child still leaves nothing
behind on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime

import httpx
import pytest

from core.settings import Settings
from tests.conftest import ROOT, load_example, start_api, start_worker, wait_for_state
from tests.test_dashboard import browser, expect, page  # noqa: F401 - fixtures, the page test
from tests.test_up import StartUp, start_up  # noqa: F401 - the fixture for the up test
from tests.test_warm_child import _warm_children

PHASES = ("interpreter_s", "imports_s", "job_s", "data_s", "model_s", "optimizer_s",
          "resume_s", "preflight_s", "first_step_s")


def small_spec(name: str, epochs: int = 2) -> dict:
    return load_example("digits-mlp") | {"name": name,
                                         "training": {"epochs": epochs, "batch_size": 64}}


def finished(client: httpx.Client, spec: dict) -> dict:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    job = wait_for_state(client, response.json()["id"], {"succeeded", "failed", "cancelled"},
                         timeout=180)
    assert job["state"] == "succeeded", job["error"]
    return job


def check_breakdown(job: dict) -> dict:
    """Sane numbers: every phase non-negative, together the total, the first step between
    the job's start and its end."""
    startup = job["startup"]
    assert startup is not None, job
    assert startup["attempt"] == job["attempt"] == 1
    for phase in PHASES:
        assert startup[phase] >= 0, (phase, startup)
    total = startup["total_s"]
    assert 0 < total < 120, startup
    assert abs(sum(startup[phase] for phase in PHASES) - total) < 0.01, startup
    assert startup["first_step_s"] > 0 and startup["data_s"] > 0, startup
    # Submit to claim, as the job's own timestamps say.
    queued = (datetime.fromisoformat(job["started_at"])
              - datetime.fromisoformat(job["created_at"])).total_seconds()
    assert startup["queue_s"] == pytest.approx(queued, abs=0.01), startup
    first_step = datetime.fromisoformat(startup["first_step_at"])
    assert datetime.fromisoformat(job["started_at"]) < first_step
    assert first_step < datetime.fromisoformat(job["finished_at"])
    return startup


def shown_seconds(value: float) -> str:
    """As the job page writes a phase's time."""
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def test_warm_child_is_the_default_and_false_turns_it_off(monkeypatch) -> None:
    monkeypatch.delenv("TRAINDOCK_WARM_CHILD", raising=False)
    assert Settings().warm_child is True
    monkeypatch.setenv("TRAINDOCK_WARM_CHILD", "false")
    assert Settings().warm_child is False


def test_a_job_on_a_default_worker_starts_warm_and_shows_its_startup(
        client, worker, page, api_url) -> None:  # noqa: F811 - page: the imported fixture
    """The session's worker is started with the defaults: its job goes to a warm process, and
    the breakdown is on the job, on its page and in `traindock show --startup`."""
    job = finished(client, small_spec("startup-warm"))
    startup = check_breakdown(job)
    assert startup["warm"] is True, startup
    assert startup["interpreter_s"] == 0, startup  # paid before the job arrived

    described = client.get("/openapi.json").json()["components"]["schemas"]
    assert "first_step_s" in described["StartupOut"]["properties"]

    page.goto(f"/jobs/{job['id']}")
    line = page.locator("#job-startup")
    expect(line).to_be_visible()
    expect(line).to_contain_text("start-up")
    expect(line).to_contain_text("warm process, attempt 1")
    expect(line.locator('[data-phase="data_s"]')).to_have_text(
        f"data {shown_seconds(startup['data_s'])}")
    expect(line.locator('[data-phase="total_s"]')).to_have_text(
        f" {shown_seconds(startup['total_s'])}")

    shown = subprocess.run(
        [sys.executable, "-m", "cli.main", "show", job["id"][:8], "--startup", "--url", api_url],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "start-up of attempt 1, on a warm training process:" in shown.stdout
    assert re.search(rf"^first step +{startup['first_step_s']:.3f}$", shown.stdout, re.M)
    assert re.search(rf"^total +{startup['total_s']:.3f}$", shown.stdout, re.M), shown.stdout


def test_a_cold_child_counts_its_interpreter_and_imports(fresh_database, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")}
    env.update(TRAINDOCK_DATABASE_URL=fresh_database, TRAINDOCK_BROKER_URL="filesystem://",
               TRAINDOCK_DATA_DIR=str(tmp_path / "data"), TRAINDOCK_WARM_CHILD="false",
               TRAINDOCK_AUTH="off", PYTHONUNBUFFERED="1")
    api, url = start_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            job = finished(client, small_spec("startup-cold", epochs=1))
            time.sleep(1.0)  # a warm child would be started as the job's exits
            assert _warm_children(worker.proc.pid) == []
    finally:
        worker.stop()
        api.stop()
    startup = check_breakdown(job)
    assert startup["warm"] is False, startup
    # A fresh interpreter's start and `import torch` take a good part of a second at least.
    assert startup["interpreter_s"] > 0 and startup["imports_s"] > 0.2, startup
    log = (tmp_path / "data" / "logs" / job["id"] / "attempt-1.log").read_text()
    assert "(cold child): interpreter" in log and "first training step done" in log, log


@pytest.mark.timeout(600)
def test_up_keeps_a_warm_child_and_ctrl_c_leaves_nothing_behind(start_up: StartUp) -> None:  # noqa: F811
    up = start_up()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        up.wait_until_healthy(client)
        deadline = time.monotonic() + 180
        while not any(command.endswith("worker.child --wait")
                      for _, command in up.described.values()):
            assert time.monotonic() < deadline, f"no warm training process: {up.described}"
            time.sleep(0.5)
            up.record_processes()
    up.stop_and_check_nothing_is_left(signal.SIGINT)


def test_the_startup_column_reverts_on_its_own() -> None:
    from sqlalchemy import create_engine, inspect

    from core.migrate import downgrade, upgrade
    from tests.conftest import create_database, drop_database

    name = f"traindock_startup_{os.getpid()}_{int(time.time())}"
    url = Settings(database_url=create_database(name)).sqlalchemy_url

    def columns() -> set[str]:
        engine = create_engine(url)
        try:
            return {column["name"] for column in inspect(engine).get_columns("job")}
        finally:
            engine.dispose()

    try:
        upgrade(url)
        assert "startup" in columns()
        downgrade(url, "0004_metric_rollup")
        assert "startup" not in columns()
        upgrade(url)
        assert "startup" in columns()
    finally:
        drop_database(name)
