"""A learning-rate range test through the whole service: `traindock lr-find` submits the
digits MLP in mode lr_find over real HTTP, a real worker runs it, and the report, the
curve and the progress are read back. Also the spec's 422s, over the real API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, wait_for_state
from tests.test_cli import ENV, traindock

EXAMPLE = str(ROOT / "examples" / "digits-mlp.json")


@pytest.fixture(scope="module")
def found(api_url: str, worker) -> tuple[str, subprocess.CompletedProcess]:
    result = traindock("lr-find", EXAMPLE, "--url", api_url)
    match = re.search(r"range test ([0-9a-f-]{36}) \(100 steps\)", result.stderr)
    assert match, result
    return match.group(1), result


def test_the_cli_prints_the_suggestion_with_its_rule_and_the_others(found) -> None:
    job_id, result = found
    assert result.returncode == 0, result
    out = result.stdout
    line = re.search(r"suggested learning rate: (\S+) \(valley\); steep (\S+)  minimum (\S+)",
                      out)
    assert line, out
    assert 1e-4 <= float(line.group(1)) <= 3e-2, out  # Adam on the digits MLP
    assert re.search(r"^points    \d+, (end of range|diverged at lr \S+)", out, re.M), out
    assert "<- " in out and "valley" in out.split("suggested learning rate")[1]
    assert re.search(r"^loss  [▁▂▃▄▅▆▇█]{20,}$", out, re.M), out
    assert job_id in out


def test_the_job_reports_its_suggestion_curve_and_progress(found, client) -> None:
    job_id, _ = found
    job = wait_for_state(client, job_id, {"succeeded", "failed", "cancelled"})
    assert job["state"] == "succeeded", job["error"]
    report = job["summary"]["lr_find"]
    assert report["rule"] == "valley"
    assert report["suggested_lr"] == report["suggestions"]["valley"]
    for rate in report["suggestions"].values():
        assert 1e-6 < rate < 1.0, report
    assert report["stopped"] == "end of range" or report["stopped"].startswith("diverged at lr")
    points = report["points"]
    assert 20 < points <= 100
    assert job["progress"]["step"] == job["progress"]["total_steps"] == points
    # No training metric is a score of a range test.
    assert not [name for name in job["summary"]["best"] if name.startswith("lr_find")]

    series = client.get(f"/v1/jobs/{job_id}/metrics",
                        params={"names": "lr_find/loss,lr_find/loss_raw,lr"}).json()["series"]
    assert sorted(series) == ["lr", "lr_find/loss", "lr_find/loss_raw"]
    for values in series.values():
        assert values["step"] == list(range(1, points + 1))
    lrs = series["lr"]["value"]
    assert lrs[0] == pytest.approx(1e-7)
    assert all(a < b for a, b in zip(lrs, lrs[1:], strict=False))
    smoothed = series["lr_find/loss"]["value"]
    # Bias-corrected: the first smoothed point is the first loss (about ln 10), and the curve
    # falls well below it before the end.
    assert smoothed[0] == pytest.approx(series["lr_find/loss_raw"]["value"][0])
    assert 1.5 < smoothed[0] < 3.5 and min(smoothed) < smoothed[0] - 0.5
    mark = report["marks"]["valley"]
    assert mark["loss"] == pytest.approx(smoothed[lrs.index(pytest.approx(mark["lr"]))])
    assert client.get(f"/v1/jobs/{job_id}/checkpoints").json() == []


def test_watch_summarises_a_finished_range_test(found, api_url) -> None:
    job_id, result = found
    watched = traindock("watch", job_id, "--url", api_url)
    assert watched.returncode == 0, watched
    suggested = re.search(r"suggested learning rate: (\S+) \(valley\)", result.stdout).group(1)
    assert re.search(rf"^lr_find   suggested {re.escape(suggested)} \(valley\); steep \S+  "
                     r"minimum \S+; \d+ points, ", watched.stdout, re.M), watched.stdout
    assert "per-layer statistics" not in watched.stdout  # lr_find/loss is not a layer's


def test_submitting_counts_the_tests_steps_not_the_epochs(client) -> None:
    spec = {**_example(), "mode": "lr_find", "lr_find": {"steps": 37}}
    job = client.post("/v1/jobs", json=spec)
    assert job.status_code == 201, job.text
    assert job.json()["progress"]["total_steps"] == 37
    assert job.json()["spec"]["lr_find"]["steps"] == 37
    client.post(f"/v1/jobs/{job.json()['id']}/cancel")  # what it would report is tested above


@pytest.mark.parametrize(("change", "field", "says"), [
    ({"lr_find": {"start_lr": 1e-2, "end_lr": 1e-3}}, "lr_find.end_lr",
     "must be above start_lr"),
    ({"lr_find": {"steps": 5}}, "lr_find.steps", "greater than or equal to 20"),
    ({"lr_find": {"suggestion": "slide"}}, "lr_find.suggestion", "'valley', 'steep' or"),
    ({"lr_find": {"smoothing": 1.0}}, "lr_find.smoothing", "less than 1"),
    ({"lr_find": {"stop_factor": 1.0}}, "lr_find.stop_factor", "greater than 1"),
    ({"lr_find": {"start_lr": 0}}, "lr_find.start_lr", "greater than 0"),
    ({"lr_find": {"end_lr": 1e4}}, "lr_find.end_lr", "less than or equal to 1000"),
    ({"mode": "train", "lr_find": {}}, "lr_find", 'set mode to "lr_find"'),
    ({"mode": "find"}, "mode", "'train' or 'lr_find'"),
])
def test_bad_range_test_settings_are_422s_naming_the_field(client, change, field, says) -> None:
    spec = {**_example(), "mode": "lr_find", **change}
    response = client.post("/v1/jobs/validate", json=spec)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [d["field"] for d in detail] == [field], detail
    assert says in detail[0]["message"], detail


def test_the_cli_shows_a_refused_spec_and_exits_1(api_url) -> None:
    result = traindock("lr-find", EXAMPLE, "--start-lr", "1", "--end-lr", "0.1",
                       "--url", api_url)
    assert result.returncode == 1, result
    assert "lr_find.end_lr: end_lr (0.1) must be above start_lr (1)" in result.stderr


def test_a_test_that_blows_up_at_once_suggests_nothing_and_exits_1(api_url, worker,
                                                                   tmp_path) -> None:
    spec = {**_example(), "lr_find": {"start_lr": 1.0, "end_lr": 1000.0, "smoothing": 0.0,
                                      "stop_factor": 1.01}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    result = traindock("lr-find", str(path), "--url", api_url)
    assert result.returncode == 1, result
    assert re.search(r"^no suggestion: only \d+ points before the test stopped", result.stdout,
                     re.M), result.stdout
    assert "Lower lr_find.start_lr or lr_find.end_lr, or raise lr_find.steps" in result.stdout


def test_a_cancelled_range_test_is_an_error_and_exit_1(api_url, client, worker) -> None:
    """Cancelled while it runs (10,000 steps take far longer than the cancel): the loop stops
    at the next step, the job ends cancelled, and lr-find says so."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "lr-find", EXAMPLE, "--steps", "10000",
         "--url", api_url], cwd=ROOT, env=ENV | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stderr.readline()
        job_id = re.search(r"range test ([0-9a-f-]{36}) \(10000 steps\)", first).group(1)
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job_id}").json()["progress"]["step"] == 0:
            assert time.monotonic() < deadline, "the range test took no step in 60 s"
            time.sleep(0.2)
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1, (out, err)
    assert f"error: the range test {job_id[:8]} cancelled" in err, err
    assert out == ""
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert "lr_find" not in job["summary"] and 0 < job["progress"]["step"] < 10000


def _example() -> dict:
    return json.loads((ROOT / "examples" / "digits-mlp.json").read_text())
