"""The preflight (worker/preflight.py): a healthy spec passes its three checks; a huge last
layer is a suspicious initial loss; heavy dropout or a tiny rate cannot fit 16 samples; the
network and torch's RNG are left as they were, so a job's trained weights are bit for bit
those of the same job without a preflight (through the real worker); stop_on_fail fails the
job naming the check, and `traindock show --preflight` and the job page show why.
"""

from __future__ import annotations

import copy
import io
import math
import re
import subprocess
import sys

import pytest
import torch

from core.jobspec import JobSpec
from models.build import build_model
from models.losses import build_loss
from tests.conftest import ROOT, load_example, wait_for_state
from tests.test_dashboard import browser, expect, page  # noqa: F401 - fixtures, the job page
from worker.data import prepare_data
from worker.preflight import run_preflight

CPU = torch.device("cpu")


def _preflight(document: dict):
    """The preflight as the training process runs it: the network built after seeding with
    training.seed, on the job's prepared data. Returns (report, network, spec)."""
    spec = JobSpec.model_validate(document)
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, CPU)
    model, _ = build_model(spec.model, data.input_shape, shape_device="cpu")
    return run_preflight(spec, model, build_loss(spec.loss), data, CPU), model, spec


def _checks(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


def _digits(**changes) -> dict:
    document = load_example("digits-mlp")
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return document


@pytest.mark.parametrize("example", ["digits-mlp", "moons-bce", "sine-regression"])
def test_a_healthy_spec_passes_all_three(example):
    preflight, _, _ = _preflight(load_example(example))
    report = preflight.report
    checks = _checks(report)
    assert list(checks) == ["initial_loss", "gradcheck", "overfit_small_batch"]
    assert {name: c["verdict"] for name, c in checks.items()} == dict.fromkeys(checks, "pass")
    assert report["verdict"] == "pass" and report["findings"] == []
    assert report["seconds"] < report["time_budget_s"] == 10.0
    overfit = checks["overfit_small_batch"]["data"]
    assert overfit["samples"] == 16 and overfit["steps"] < 300
    assert overfit.get("accuracy", 1.0) >= 0.95 or overfit["loss_share"] <= 0.05


def test_the_initial_loss_is_compared_with_ln_c():
    preflight, _, _ = _preflight(load_example("digits-mlp"))
    data = _checks(preflight.report)["initial_loss"]["data"]
    assert data["expected_loss"] == pytest.approx(math.log(10), rel=1e-6)
    assert data["samples"] == 256


def test_a_huge_last_layer_is_a_suspicious_initial_loss():
    preflight, _, _ = _preflight(_digits(**{"model.layers.4.init": {"type": "normal",
                                                                     "std": 10.0}}))
    check = _checks(preflight.report)["initial_loss"]
    assert check["verdict"] == "fail"
    assert check["data"]["initial_loss"] >= 2 * math.log(10)
    [finding] = [f for f in preflight.report["findings"] if f["name"] ==
                 "suspicious_initial_loss"]
    assert finding["severity"] == "warning" and finding["since_step"] == 0
    assert f"{check['data']['initial_loss']:.4g}" in finding["evidence"]
    assert "(ln 10)" in finding["evidence"]
    assert finding["actions"][0]["field"] == "model.layers[4].init"
    assert finding["actions"][0]["value"] == {"type": "xavier_normal"}
    assert preflight.report["verdict"] == "fail"


@pytest.mark.parametrize(("changes", "field"), [
    ({"model.layers.3.p": 0.9}, "model.layers[3].p"),
    ({"optimizer.lr": 1e-7}, "optimizer.lr"),
], ids=["dropout-0.9", "lr-1e-7"])
def test_heavy_dropout_or_a_tiny_rate_cannot_overfit_a_small_batch(changes, field):
    document = _digits(**changes)
    if "model.layers.3.p" in changes:  # dropout 0.9 everywhere: before each linear layer too
        document["model"]["layers"].insert(1, {"type": "dropout", "p": 0.9})
        field = "model.layers[1].p"
    preflight, _, _ = _preflight(document)
    check = _checks(preflight.report)["overfit_small_batch"]
    assert check["verdict"] == "fail", check
    assert check["data"]["steps"] == 300
    assert check["data"]["accuracy"] < 0.95 and check["data"]["loss_share"] > 0.05
    [finding] = [f for f in preflight.report["findings"]
                 if f["name"] == "cannot_overfit_small_batch"]
    assert finding["actions"][0]["field"] == field
    assert "after 300 steps on 16 training samples" in finding["evidence"]


def test_the_network_and_the_global_rng_are_left_as_they_were():
    document = load_example("digits-mlp")
    document["model"]["layers"].insert(2, {"type": "batchnorm"})  # running statistics
    spec = JobSpec.model_validate(document)
    torch.manual_seed(0)
    data = prepare_data(spec, CPU)
    model, _ = build_model(spec.model, data.input_shape, shape_device="cpu")
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    preflight = run_preflight(spec, model, build_loss(spec.loss), data, CPU)
    assert preflight.report["verdict"] == "pass"
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training  # its mode too


def test_a_tiny_budget_skips_or_stops_rather_than_failing():
    document = load_example("digits-cnn")
    document["preflight"] = {"time_budget_s": 0.001}
    preflight, _, _ = _preflight(document)
    verdicts = {c["name"]: c["verdict"] for c in preflight.report["checks"]}
    assert verdicts["gradcheck"] == "skipped"
    assert verdicts["overfit_small_batch"] in ("skipped", "warn")
    assert preflight.report["findings"] == []


def test_a_check_that_cannot_run_is_skipped_and_the_job_trains(monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\n(more detail)")

    monkeypatch.setattr("worker.preflight.overfit_small_batch", out_of_memory)
    report = _preflight(load_example("moons-bce"))[0].report
    check = _checks(report)["overfit_small_batch"]
    assert check["verdict"] == "skipped"
    assert check["evidence"] == "could not run: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert report["verdict"] == "pass"  # skipped counts as neither warn nor fail


def test_preflight_off_or_fewer_checks():
    document = load_example("moons-bce")
    document["preflight"] = {"enabled": False}
    assert _preflight(document)[0].report is None
    document["preflight"] = {"checks": ["overfit_small_batch", "initial_loss"]}
    report = _preflight(document)[0].report
    assert [c["name"] for c in report["checks"]] == ["overfit_small_batch", "initial_loss"]


@pytest.mark.parametrize(("preflight", "field"), [
    ({"checks": ["initial_loss", "nope"]}, "preflight.checks"),
    ({"checks": ["gradcheck", "gradcheck"]}, "preflight.checks"),
    ({"checks": []}, "preflight.checks"),
    ({"time_budget_s": 0}, "preflight.time_budget_s"),
    ({"stop_on_fail": "yes"}, "preflight.stop_on_fail"),
    ({"budget": 5}, "preflight.budget"),
])
def test_a_bad_preflight_block_is_422_naming_the_field(client, preflight, field):
    document = {**load_example("moons-bce"), "preflight": preflight}
    response = client.post("/v1/jobs/validate", json=document)
    assert response.status_code == 422, response.text
    assert any(d["field"].startswith(field) for d in response.json()["detail"]), response.text


def _final_weights(client, job_id: str) -> dict[str, torch.Tensor]:
    rows = client.get(f"/v1/jobs/{job_id}/checkpoints").json()
    newest = max(rows, key=lambda row: row["step"])
    body = client.get(f"/v1/jobs/{job_id}/checkpoints/{newest['id']}/download").content
    return torch.load(io.BytesIO(body), weights_only=True)["model"]


def _small_job(**extra) -> dict:
    """Dropout (global RNG) and batchnorm (running statistics): what a preflight could
    disturb if it touched the job's network or RNG."""
    return {
        "dataset": {"name": "moons", "n_samples": 300},
        "model": {"layers": [{"type": "linear", "out_features": 16}, {"type": "batchnorm"},
                             {"type": "relu"}, {"type": "dropout", "p": 0.3},
                             {"type": "linear", "out_features": 2}]},
        "training": {"epochs": 2, "batch_size": 32, "seed": 5},
        **extra,
    }


def test_the_trained_weights_are_bit_identical_with_preflight_on_and_off(client, worker):
    ids = {}
    for label, block in (("on", {}), ("off", {"enabled": False})):
        response = client.post("/v1/jobs", json=_small_job(preflight=block))
        assert response.status_code == 201, response.text
        ids[label] = response.json()["id"]
    jobs = {label: wait_for_state(client, job_id, {"succeeded", "failed", "cancelled"})
            for label, job_id in ids.items()}
    assert jobs["on"]["state"] == jobs["off"]["state"] == "succeeded", jobs
    assert jobs["on"]["summary"]["preflight"]["verdict"] == "pass"
    assert "preflight" not in jobs["off"]["summary"]
    on, off = _final_weights(client, ids["on"]), _final_weights(client, ids["off"])
    assert on.keys() == off.keys()
    assert all(torch.equal(on[k], off[k]) for k in on), "the preflight changed the run"
    timing = ("samples_per_s",)
    assert ({k: v for k, v in jobs["on"]["summary"]["latest"].items() if k not in timing}
            == {k: v for k, v in jobs["off"]["summary"]["latest"].items() if k not in timing})


def test_stop_on_fail_fails_the_job_naming_the_check(
        client, worker, api_url, page) -> None:  # noqa: F811 - page: the imported fixture
    spec = _small_job(optimizer={"type": "adam", "lr": 1e-7},
                      preflight={"checks": ["overfit_small_batch"], "stop_on_fail": True})
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    job = wait_for_state(client, response.json()["id"], {"succeeded", "failed", "cancelled"})
    assert job["state"] == "failed"
    assert job["error"].startswith("preflight check overfit_small_batch failed: after 300 "
                                   "steps on 16 training samples"), job["error"]
    assert "preflight.stop_on_fail" in job["error"]
    report = job["summary"]["preflight"]
    assert report["verdict"] == "fail"
    assert [f["severity"] for f in report["findings"]] == ["error"]
    assert job["progress"]["step"] == 0  # it never trained
    # The job's diagnosis is the preflight's: the one place a reader looks for findings.
    assert job["diagnosis"]["final"] is True
    assert [f["name"] for f in job["diagnosis"]["findings"]] == ["cannot_overfit_small_batch"]

    shown = subprocess.run(
        [sys.executable, "-m", "cli.main", "show", job["id"][:8], "--preflight", "--url",
         api_url], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^overfit_small_batch +fail +\d+\.\d\d$", shown.stdout, re.M), shown.stdout
    assert "error: cannot_overfit_small_batch" in shown.stdout
    assert "  try optimizer.lr = 0.001: at 1e-07 the weights barely move" in shown.stdout

    page.goto(f"/jobs/{job['id']}")
    expect(page.locator("#job-notes li.preflight-fail")).to_contain_text(
        "preflight overfit_small_batch: fail: after 300 steps on 16 training samples")
