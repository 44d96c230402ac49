"""The terminal client as a user runs it: `python -m cli.main VERB` in a child process against
a real API and worker (one short job, trained once for the module), or against a small
stand-in server where the answer must be one the real API cannot be made to give on cue
(an ambiguous id prefix, an outage in the middle of a watch, a job that never ends)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch

from cli.watch import StepRate, progress_line, summary_block
from tests.conftest import ROOT, free_port, load_example

ENV = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")}


def traindock(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
              stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd,
                          env=(env or ENV) | {"PYTHONPATH": str(ROOT)}, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


@dataclass
class FinishedJob:
    id: str
    submit: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def finished(api_url: str, worker, tmp_path_factory: pytest.TempPathFactory) -> FinishedJob:
    """digits-mlp for 3 epochs, submitted and watched to the end by `submit --watch`."""
    spec = load_example("digits-mlp") | {"name": "cli-digits-mlp",
                                         "training": {"epochs": 3, "batch_size": 64}}
    path = tmp_path_factory.mktemp("cli") / "job.json"
    path.write_text(json.dumps(spec))
    result = traindock("submit", str(path), "--watch", "--url", api_url)
    return FinishedJob(id=result.stdout.splitlines()[0].strip(), submit=result)


def test_submit_watch_exits_0_and_ends_with_the_final_metrics(finished, client):
    result = finished.submit
    assert result.returncode == 0, result.stderr
    job = client.get(f"/v1/jobs/{finished.id}").json()
    assert job["state"] == "succeeded"
    lines = result.stdout.rstrip().splitlines()
    assert lines[-2].split() == ["test_accuracy", f"{job['summary']['test']['test_accuracy']:.4g}"]
    assert lines[-1].split()[0] == "test_loss"
    assert f"state     succeeded  attempt 1 of {job['max_attempts']}" in result.stdout
    # stderr is a pipe here: one line per state and epoch seen, never a carriage return
    assert "\r" not in result.stderr
    assert "succeeded  epoch 3/3  step 63/63" in result.stderr


def test_ls_shows_the_job(finished, api_url):
    result = traindock("ls", "--state", "succeeded", "--url", api_url)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:9] == ["id", "name", "state", "epoch", "progress", "best", "age", "ran",
                                  "spec"]
    row = next(r for r in rows if r.startswith(finished.id[:8]))
    assert row.split()[1:6] == ["cli-digits-mlp", "succeeded", "3/3", "100%", "val_accuracy"]


def test_show_accepts_an_id_prefix(finished, api_url):
    result = traindock("show", finished.id[:8], "--url", api_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == finished.id


def test_metrics_csv_is_every_point_the_api_has(finished, api_url, client):
    result = traindock("metrics", finished.id[:8], "--csv", "--url", api_url)
    assert result.returncode == 0, result.stderr
    reader = csv.DictReader(io.StringIO(result.stdout))
    assert reader.fieldnames == ["name", "step", "epoch", "value", "wall_time"]
    from_csv = sorted((r["name"], int(r["step"]), int(r["epoch"]), float(r["value"]))
                      for r in reader)
    series = client.get(f"/v1/jobs/{finished.id}/metrics",
                        params={"max_points": 100_000}).json()["series"]
    from_json = sorted((name, step, epoch, value) for name, s in series.items()
                       for step, epoch, value in zip(s["step"], s["epoch"], s["value"],
                                                     strict=True))
    assert len(from_csv) > 63
    assert from_csv == from_json


def test_metrics_table_has_the_latest_value_of_each_metric(finished, api_url, client):
    result = traindock("metrics", finished.id, "--url", api_url)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    test = client.get(f"/v1/jobs/{finished.id}").json()["summary"]["test"]
    assert rows["test_accuracy"][0] == f"{test['test_accuracy']:.4g}"
    assert rows["val_loss"][1:] == ["63", "3"]  # step, epoch
    assert rows["train_loss_step"][1:] == ["63", "3"]  # the end of a long series
    only = traindock("metrics", finished.id, "--names", "val_loss,lr", "--url", api_url)
    assert [line.split()[0] for line in only.stdout.splitlines()[1:]] == ["lr", "val_loss"]


def test_download_keeps_the_newest_checkpoint_verified(finished, api_url, client, tmp_path):
    result = traindock("download", finished.id[:6], "--url", api_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / result.stdout.strip()
    assert path.name == f"cli-digits-mlp-{finished.id[:8]}-step-63.pt"
    newest = max(client.get(f"/v1/jobs/{finished.id}/checkpoints").json(),
                 key=lambda c: c["step"])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == newest["sha256"]
    state = torch.load(path, weights_only=True)
    assert state["metrics"]["test_accuracy"] > 0
    assert list(tmp_path.iterdir()) == [path]  # no partial file left

    chosen = traindock("download", finished.id, "--checkpoint", "999", "-o",
                       str(tmp_path / "x.pt"), "--url", api_url)
    assert chosen.returncode == 1
    assert f"job {finished.id} has no checkpoint 999; it keeps" in chosen.stderr


def test_cancelling_a_finished_job_is_the_servers_409(finished, api_url):
    result = traindock("cancel", finished.id[:8], "--url", api_url)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: job {finished.id} has already ended (succeeded); nothing to cancel")


def test_a_bad_spec_is_the_servers_422(api_url):
    spec = {"dataset": {"name": "digits"},
            "model": {"layers": [{"type": "conv2d", "out_channels": 8},
                                 {"type": "linear", "out_features": 10}]}}
    result = traindock("submit", "-", "--url", api_url, stdin=json.dumps(spec))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: model.layers[1] (linear): input is 3-D")
    assert "Traceback" not in result.stderr


def test_validate_prints_frozen_parameters_flops_and_warnings(api_url, client):
    spec = {"dataset": {"name": "spirals"},
            "model": {"layers": [{"type": "linear", "out_features": 8, "frozen": True},
                                 {"type": "batchnorm"}, {"type": "relu"},
                                 {"type": "linear", "out_features": 3}, {"type": "softmax"}]}}
    result = traindock("validate", "-", "--url", api_url, stdin=json.dumps(spec))
    assert result.returncode == 0, result.stderr
    model = client.post("/v1/jobs/validate", json=spec).json()["model"]
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["layer", "type", "output", "shape", "params", "fixed", "FLOPs"]
    assert lines[1].split() == ["layers.0", "linear", "8", "24", "24",
                                f"{model['layers'][0]['flops']:,}"]
    assert (f"total parameters: {model['total_params']:,} ({model['trainable_params']:,} "
            f"trainable); FLOPs per example: {model['total_flops']:,}") in lines
    assert any(line.startswith("warning: model.layers[4] (softmax)") for line in lines)


def test_gradcheck_prints_each_tensor_and_exits_0_when_correct(api_url):
    spec = {"dataset": {"name": "spirals"},
            "model": {"layers": [{"type": "linear", "out_features": 8}, {"type": "tanh"},
                                 {"type": "linear", "out_features": 3}]}}
    result = traindock("gradcheck", "-", "--url", api_url, stdin=json.dumps(spec))
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:5]]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]
    assert result.stdout.splitlines()[-1] == "verdict: correct"


def test_upload_list_and_remove_a_dataset(api_url, tmp_path):
    path = tmp_path / "points.csv"
    rows = ["x,y,label"] + [f"{i % 7},{(i * 3) % 5},{'odd' if i % 2 else 'even'}"
                            for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    name = f"cli-points-{os.getpid()}"
    result = traindock("upload", str(path), "--name", name, "--url", api_url)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert f"  {name}: classification, 2 classes, input 2, train 40; sha256 " in first
    assert second == f'train on it with "dataset": {{"name": "{name}"}}'

    listed = traindock("datasets", "--url", api_url)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(name))
    assert row.split()[:6] == [name, "csv", "classification", "2", "2", "train"]
    assert "digits" in listed.stdout and "built-in" in listed.stdout

    again = traindock("upload", str(path), "--name", name, "--url", api_url)
    assert again.returncode == 1 and again.stderr.startswith("error: name")
    assert traindock("rm-dataset", name, "--url", api_url).stdout == f"deleted {name}\n"
    gone = traindock("rm-dataset", name, "--url", api_url)
    assert gone.returncode == 1 and name in gone.stderr


def test_an_unreachable_api_is_exit_2_with_advice():
    url = f"http://127.0.0.1:{free_port()}"
    for verb in (["ls"], ["watch", "0123456789"], ["submit", str(ROOT / "examples" /
                                                              "digits-mlp.json")]):
        result = traindock(*verb, "--url", url)
        assert result.returncode == 2, result
        assert result.stderr.strip() == (f"error: cannot reach the traindock API at {url}: "
                                         "is `traindock up` running? (--url to point elsewhere)")


# --- against a stand-in server --------------------------------------------------------------

JOB_ID = "5e1f0c3a-1b2c-4d5e-8f90-0123456789ab"
TWIN_ID = "5e1f0c3a-ffff-4d5e-8f90-0123456789ab"


def fake_job(state: str, step: int = 10, **extra: Any) -> dict[str, Any]:
    return {"id": JOB_ID, "name": "fake", "state": state, "attempt": 1, "max_attempts": 3,
            "progress": {"epoch": 1, "epochs": 2, "step": step, "total_steps": 20},
            "summary": {"latest": {"train_loss": 0.5}, "best": {}, "test": {}},
            "error": None, "created_at": "2026-01-01T00:00:00Z",
            "started_at": "2026-01-01T00:00:01Z", "finished_at": None} | extra


class StandIn:
    """An HTTP server answering GETs from `answer(path)` -> (status, body); it records the
    Authorization header of every request."""

    def __init__(self, answer: Callable[[str], tuple[int, Any]]) -> None:
        self.authorization: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                outer.authorization.append(self.headers.get("Authorization"))
                status, body = answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in() -> Iterator[Callable[[Callable[[str], tuple[int, Any]]], StandIn]]:
    servers: list[StandIn] = []

    def start(answer: Callable[[str], tuple[int, Any]]) -> StandIn:
        servers.append(StandIn(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_the_token_is_sent_as_a_bearer_header(stand_in):
    server = stand_in(lambda path: (200, fake_job("succeeded")))
    assert traindock("show", JOB_ID, "--url", server.url, "--token", "s3cret").returncode == 0
    from_env = ENV | {"TRAINDOCK_URL": server.url, "TRAINDOCK_TOKEN": "from-env"}
    assert traindock("show", JOB_ID, env=from_env).returncode == 0
    assert traindock("show", JOB_ID, "--url", server.url).returncode == 0
    assert server.authorization == ["Bearer s3cret", "Bearer from-env", None]


def test_the_api_key_comes_from_the_environment_or_the_config_file(stand_in, tmp_path):
    server = stand_in(lambda path: (200, fake_job("succeeded")))
    config = tmp_path / "config.toml"
    config.write_text(f'api_key = "td_from_file"\nurl = "{server.url}"\n')
    by_env = ENV | {"TRAINDOCK_URL": server.url, "TRAINDOCK_API_KEY": "td_from_env",
                    "TRAINDOCK_CONFIG": str(config)}
    assert traindock("show", JOB_ID, env=by_env).returncode == 0
    by_file = ENV | {"TRAINDOCK_CONFIG": str(config)}  # the url comes from the file too
    assert traindock("show", JOB_ID, env=by_file).returncode == 0
    assert server.authorization == ["Bearer td_from_env", "Bearer td_from_file"]
    config.write_text("api_key = td_unquoted\n")
    broken = traindock("show", JOB_ID, "--url", server.url, env=by_file)
    assert broken.returncode == 1 and "not valid TOML" in broken.stderr, broken.stderr


def test_an_ambiguous_or_short_prefix_is_refused(stand_in):
    jobs = [fake_job("succeeded"), fake_job("failed", id=TWIN_ID)]
    server = stand_in(lambda path: (200, {"items": jobs, "next_cursor": None}))
    result = traindock("show", "5e1f0c3a", "--url", server.url)
    assert result.returncode == 1
    assert "'5e1f0c3a' is the start of 2 job ids" in result.stderr
    assert JOB_ID in result.stderr and TWIN_ID in result.stderr
    short = traindock("cancel", "5e1f0", "--url", server.url)
    assert short.returncode == 1
    assert "at least 6 characters" in short.stderr
    missing = traindock("download", "abcdef", "--url", server.url)
    assert missing.returncode == 1
    assert "no job id starts with 'abcdef'" in missing.stderr


def test_watch_rides_out_an_api_outage(stand_in):
    calls = iter([(200, fake_job("running", step=5)), (503, {"detail": "down"}),
                  (503, {"detail": "down"})])
    done = fake_job("failed", step=12, error="loss became NaN at step 12",
                    finished_at="2026-01-01T00:00:09Z")
    server = stand_in(lambda path: next(calls, (200, done)))
    result = traindock("watch", JOB_ID, "--url", server.url)
    assert result.returncode == 1  # the job failed
    assert "down; trying again" in result.stderr
    assert result.stdout.rstrip().endswith("error     loss became NaN at step 12")
    assert "state     failed  attempt 1 of 3  took 0:08" in result.stdout


def test_ctrl_c_stops_watching_and_says_how_to_cancel(stand_in):
    server = stand_in(lambda path: (200, fake_job("running")))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "watch", JOB_ID, "--url", server.url], cwd=ROOT,
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a test run started in the background inherits SIGINT ignored; Ctrl-C is the point here
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 20
        while len(server.authorization) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert out == ""
    assert "Traceback" not in err
    assert f"`traindock cancel {JOB_ID[:8]}` cancels it" in err


# --- the pieces, without a server -----------------------------------------------------------

def test_the_progress_line_drops_detail_to_fit_a_narrow_terminal():
    job = fake_job("running", summary={"latest": {"train_loss": 0.25, "val_loss": 0.3,
                                                  "val_accuracy": 0.9}})
    wide = progress_line(job, 12.0)
    assert "epoch 1/2  step 10/20  [########--------]   50%" in wide
    for part in ("train_loss 0.25", "val_loss 0.3", "val_accuracy 0.9", "ETA 0:12"):
        assert part in wide
    narrow = progress_line(job, 12.0, width=60)
    assert len(narrow) <= 60
    assert "50%" in narrow and "ETA 0:12" in narrow and "[#" not in narrow


def test_the_eta_comes_from_the_rate_seen_while_watching():
    rate = StepRate()
    job = fake_job("running", attempt=2, step=100)  # resumed: its own average would mislead
    job["progress"]["total_steps"] = 160
    rate.add(job, now=0.0)
    assert rate.eta_s(job) is None
    job["progress"]["step"] = 110
    rate.add(job, now=4.0)  # 2.5 steps a second, 50 steps to go
    assert rate.eta_s(job) == pytest.approx(20.0)


def test_the_client_imports_neither_the_server_nor_torch():
    code = ("import sys, cli.main, cli.client, cli.watch, cli.ls, cli.metrics, cli.download, "
            "cli.datasets;"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'api', 'worker', 'core', 'models', 'torch', 'sqlalchemy', 'celery', 'psycopg'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_summary_keeps_per_layer_statistics_out_and_the_notes_in():
    job = {"id": "d3f79683-0000", "name": "overfit", "state": "succeeded", "attempt": 1,
           "progress": {"epoch": 16, "epochs": 16, "step": 64, "total_steps": 64},
           "created_at": None, "started_at": None, "finished_at": None, "error": None,
           "summary": {"latest": {"val_loss": 0.43, "grad_norm/layers.0": 0.29,
                                  "update_ratio/layers.0": 0.004},
                       "best": {"val_loss": {"value": 0.36, "step": 44, "epoch": 11}},
                       "test": {}, "notes": ["early stopping at epoch 16 (step 64): ..."]}}
    text = summary_block(job)
    assert "val_loss" in text and "grad_norm/layers.0" not in text
    assert "(2 per-layer statistics: traindock metrics d3f79683 lists them)" in text
    assert text.splitlines()[-1] == "note      early stopping at epoch 16 (step 64): ..."
