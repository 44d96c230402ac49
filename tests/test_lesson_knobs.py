"""The knobs the classic lessons need (issue 16): a subsampled training split of any dataset,
validate with another input shape, the textbook Xavier beside the activation-aware one, a
warm-up whose first step moves the weights, the gradient check's eps, and the
`unnormalized_inputs` warning. Real API process where a route is involved."""

from __future__ import annotations

import io
import json
import math
import uuid

import numpy as np
import pytest
import torch

from core import datasets
from core.input_scales import unnormalized_inputs
from core.jobspec import JobSpec, validate_job
from core.settings import Settings
from core.specs.dataset import DatasetSpec
from models.build import build_model
from models.losses import build_loss
from tests.test_cli import traindock
from tests.test_run_plan import StepCounter
from traindock import Client
from worker.data import prepare_data
from worker.optim import build_optimizer
from worker.schedules import build_scheduler
from worker.train import train

CPU = torch.device("cpu")


def _mlp(dataset: dict, **extra) -> dict:
    return {
        "dataset": dataset,
        "model": {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 16},
                             {"type": "relu"}, {"type": "linear", "out_features": 10}]},
        "training": {"epochs": 2, "batch_size": 32, "seed": 0},
        **extra,
    }


# --- dataset.n_train ----------------------------------------------------------------------------


def test_n_train_draws_a_seeded_class_balanced_subset_and_leaves_val_and_test_whole() -> None:
    stored = datasets.source_arrays("digits", datasets.Options(), None, None)
    whole = datasets.job_arrays(stored, "classification", 0.1, seed=3)
    small = datasets.job_arrays(stored, "classification", 0.1, seed=3, n_train=100)
    again = datasets.job_arrays(stored, "classification", 0.1, seed=3, n_train=100)
    other = datasets.job_arrays(stored, "classification", 0.1, seed=4, n_train=100)
    assert len(small.train_rows) == 100
    np.testing.assert_array_equal(small.train_rows, again.train_rows)
    assert not np.array_equal(small.train_rows, other.train_rows)  # the seed draws anew
    assert set(small.train_rows) <= set(whole.train_rows)
    np.testing.assert_array_equal(small.val_rows, whole.val_rows)
    np.testing.assert_array_equal(small.y_test, whole.y_test)
    counts = np.bincount(stored["y_train"][small.train_rows], minlength=10)
    assert counts.min() >= 9 and counts.max() <= 11, counts  # each class keeps its share


def test_n_train_subsamples_an_uploaded_datasets_own_training_split() -> None:
    rng = np.random.default_rng(0)
    stored = {"x_train": rng.normal(size=(50, 3)), "y_train": rng.normal(size=(50, 1)),
              "x_val": rng.normal(size=(20, 3)), "y_val": rng.normal(size=(20, 1))}
    arrays = datasets.job_arrays(stored, "regression", 0.1, seed=0, n_train=7)
    assert len(arrays.train_rows) == 7 and arrays.val_rows is None
    assert arrays.x_val is stored["x_val"]  # its own validation split, whole


def test_the_loop_trains_on_n_train_samples_normalised_by_their_own_statistics(
        settings: Settings) -> None:
    job = _mlp({"name": "digits", "n_train": 100})
    spec = JobSpec.model_validate(job)
    checked = validate_job(spec, settings)
    data = prepare_data(spec, CPU)
    assert len(data.x_train) == checked.n_train == 100
    whole = prepare_data(JobSpec.model_validate(_mlp({"name": "digits"})), CPU)
    assert len(whole.x_train) > 1000
    assert torch.equal(data.y_val, whole.y_val) and torch.equal(data.y_test, whole.y_test)
    # standardised with the subsample's statistics: mean 0 over the 100 samples trained on
    assert data.x_train.mean(dim=0).abs().max() < 1e-5
    counter = StepCounter()
    torch.manual_seed(0)
    model, _ = build_model(spec.model, data.input_shape)
    train(spec, model, build_optimizer(spec, model), build_loss(spec.loss), data, [counter])
    assert checked.estimated_steps == counter.steps == 2 * 4  # ceil(100 / 32) an epoch


def test_n_train_above_the_split_is_a_422_naming_it_and_the_size(client) -> None:
    response = client.post("/v1/jobs/validate", json=_mlp({"name": "digits", "n_train": 5000}))
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert detail["field"] == "dataset.n_train"
    assert "holds 1,294" in detail["message"] and "at most 1,294" in detail["message"]
    whole = client.post("/v1/jobs/validate", json=_mlp({"name": "digits", "n_train": 1294}))
    assert whole.status_code == 200, whole.text
    zero = client.post("/v1/jobs/validate", json=_mlp({"name": "digits", "n_train": 0}))
    assert zero.status_code == 422 and zero.json()["detail"][0]["field"] == "dataset.n_train"


def test_a_submitted_job_counts_the_steps_of_its_subsample(client) -> None:
    response = client.post("/v1/jobs", json=_mlp({"name": "digits", "n_train": 100}))
    assert response.status_code == 201, response.text
    created = response.json()
    try:
        assert created["progress"]["total_steps"] == 2 * 4
    finally:
        client.post(f"/v1/jobs/{created['id']}/cancel")


# --- validate with another input shape ----------------------------------------------------------


def _cnn(head: str) -> dict:
    conv = [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": "same"},
            {"type": "relu"}]
    tail = ([{"type": "global_avg_pool"}] if head == "global" else [{"type": "flatten"}])
    return {"dataset": {"name": "digits"},
            "model": {"layers": [*conv, *tail, {"type": "linear", "out_features": 10}]}}


def test_validate_builds_for_another_input_shape(client) -> None:
    def params(head: str, shape: str | None) -> tuple[int, list[int], list[str]]:
        response = client.post("/v1/jobs/validate", json=_cnn(head),
                               params={"input_shape": shape} if shape else {})
        assert response.status_code == 200, response.text
        body = response.json()
        return body["model"]["total_params"], body["model"]["input_shape"], body["warnings"]

    pooled, shape, warnings = params("global", None)
    assert shape == [1, 8, 8] and not warnings
    pooled_big, shape, warnings = params("global", "1,64,64")
    assert shape == [1, 64, 64] and pooled_big == pooled == 8 * 9 + 8 + 8 * 10 + 10
    assert any("input_shape" in w and "(1, 64, 64)" in w for w in warnings)
    flat, _, _ = params("flatten", None)
    flat_big, _, _ = params("flatten", "1, 64, 64")
    assert flat == 80 + 8 * 64 * 10 + 10 and flat_big == 80 + 8 * 64 * 64 * 10 + 10


@pytest.mark.parametrize("shape", ["1,x,8", "0,8,8", "1,2,3,4,5", "", "1,100000,8", "-1,8"])
def test_a_bad_input_shape_is_a_422_naming_it(client, shape: str) -> None:
    response = client.post("/v1/jobs/validate", json=_cnn("global"), params={"input_shape": shape})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == "input_shape"


def test_an_input_shape_the_network_cannot_take_names_the_layer(client) -> None:
    response = client.post("/v1/jobs/validate", json=_cnn("global"),
                           params={"input_shape": "64"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"].startswith("model.layers[0]")


def test_the_client_and_the_cli_pass_the_input_shape_on(api_url, tmp_path) -> None:
    with Client(api_url, timeout=30) as td:
        assert td.validate(_cnn("flatten")).model["total_params"] == 80 + 8 * 64 * 10 + 10
        big = td.validate(_cnn("flatten"), input_shape=(1, 16, 16))
        assert big.model["total_params"] == 80 + 8 * 256 * 10 + 10
    path = tmp_path / "cnn.json"
    path.write_text(json.dumps(_cnn("flatten")))
    result = traindock("validate", str(path), "--input-shape", "1,16,16", "--url", api_url)
    assert result.returncode == 0, result.stderr
    assert f"total parameters: {80 + 8 * 256 * 10 + 10:,}" in result.stdout
    assert "warning: input_shape" in result.stdout


# --- the textbook Xavier ------------------------------------------------------------------------


def _first_std(init) -> float:
    """The std of the second linear layer's weight (512x512, followed by a relu) as built."""
    spec = JobSpec.model_validate({
        "dataset": {"name": "spirals"},
        "model": {"init": init, "layers": [
            {"type": "linear", "out_features": 512}, {"type": "relu"},
            {"type": "linear", "out_features": 512}, {"type": "relu"},
            {"type": "linear", "out_features": 3}]},
    })
    torch.manual_seed(0)
    model, _ = build_model(spec.model, (2,))
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return float(weights[1].detach().std())


def test_textbook_xavier_draws_a_root_two_smaller_std_than_he_on_a_relu_net() -> None:
    he = _first_std("he_normal")
    aware = _first_std("xavier_normal")
    textbook = _first_std({"type": "xavier_normal", "gain": 1})
    assert he == pytest.approx(math.sqrt(2 / 512), rel=0.01)
    assert aware == pytest.approx(he, rel=0.01)  # gain from the relu: the same as He here
    assert textbook == pytest.approx(math.sqrt(2 / (512 + 512)), rel=0.01)
    assert he / textbook == pytest.approx(math.sqrt(2), rel=0.02)
    uniform = _first_std({"type": "xavier_uniform", "gain": 1})
    assert uniform == pytest.approx(math.sqrt(2 / (512 + 512)), rel=0.01)


# --- warm-up's first step -----------------------------------------------------------------------


def _first_step_moves(schedule: dict) -> tuple[float, bool]:
    spec = JobSpec.model_validate({**_mlp({"name": "moons"}), "schedule": schedule,
                                   "optimizer": {"type": "sgd", "lr": 0.5}})
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(spec, model)
    build_scheduler(spec.schedule, optimizer, steps_per_epoch=10, epochs=2)
    before = model.weight.detach().clone()
    model(torch.ones(4, 2)).pow(2).sum().backward()
    optimizer.step()
    return optimizer.param_groups[0]["lr"], not torch.equal(before, model.weight)


def test_warmup_starts_above_zero_by_default_so_the_first_step_moves_the_weights() -> None:
    spec = JobSpec.model_validate({**_mlp({"name": "moons"}),
                                   "schedule": {"type": "warmup", "warmup_length": 5}})
    assert spec.schedule.start_factor is None and spec.schedule.first_factor == 0.2
    lr, moved = _first_step_moves({"type": "warmup", "warmup_length": 5})
    assert lr == pytest.approx(0.1) and moved
    lr, moved = _first_step_moves({"type": "warmup", "warmup_length": 5, "start_factor": 0.0})
    assert lr == 0.0 and not moved  # asked for: a first step that does nothing


# --- the gradient check's eps -------------------------------------------------------------------


def _small_check(**extra) -> dict:
    return {"dataset": {"name": "moons"},
            "model": {"layers": [{"type": "linear", "out_features": 4}, {"type": "tanh"},
                                 {"type": "linear", "out_features": 2}]},
            **extra}


def test_the_gradient_checks_eps_is_a_setting(client) -> None:
    default = client.post("/v1/gradcheck", json=_small_check(), params={"batch_size": 4})
    assert default.status_code == 200, default.text
    assert default.json()["eps"] == 1e-6
    coarse = client.post("/v1/gradcheck", json=_small_check(gradcheck_eps=1e-2),
                         params={"batch_size": 4})
    assert coarse.status_code == 200, coarse.text
    body = coarse.json()
    assert body["eps"] == 1e-2 and "eps 0.01" in body["notes"][0]
    # truncation error grows with eps²: a coarse step is measurably worse on a smooth net
    worst = max(t["relative_error"] for t in body["tensors"])
    assert worst > 10 * max(t["relative_error"] for t in default.json()["tensors"])


@pytest.mark.parametrize("eps", [1e-1, 1e-12, 0])
def test_an_eps_out_of_range_is_a_422_naming_it(client, eps: float) -> None:
    for path in ("/v1/gradcheck", "/v1/jobs/validate"):
        response = client.post(path, json=_small_check(gradcheck_eps=eps))
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["field"] == "gradcheck_eps"


# --- unnormalized_inputs ------------------------------------------------------------------------


def _upload(client, scales: list[float]) -> str:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(200, len(scales))) * np.asarray(scales)).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, x_train=x, y_train=(np.arange(200) % 2).astype(np.int64))
    name = f"scales-{uuid.uuid4().hex[:10]}"
    response = client.post("/v1/datasets", files={"file": ("data.npz", buffer.getvalue())},
                           data={"name": name})
    assert response.status_code == 201, response.text
    return name


def _tabular(name: str, normalize: str) -> dict:
    return {"dataset": {"name": name, "normalize": normalize},
            "model": {"layers": [{"type": "linear", "out_features": 8}, {"type": "relu"},
                                 {"type": "linear", "out_features": 2}]}}


def _named(body: dict) -> list[str]:
    return [w["name"] for w in body["named_warnings"]]


def test_raw_inputs_with_spreads_orders_apart_are_warned_about(client) -> None:
    wide = _upload(client, [1.0, 1700.0, 3.0])
    response = client.post("/v1/jobs/validate", json=_tabular(wide, "none"))
    assert response.status_code == 200, response.text
    body = response.json()
    (warning,) = body["named_warnings"]
    assert warning["name"] == "unnormalized_inputs"
    assert warning["field"] == "dataset.normalize"
    assert warning["suggestion"] == "dataset.normalize: standardize"
    assert "feature 0" in warning["message"] and "feature 1" in warning["message"]
    assert warning["message"] in body["warnings"]
    submitted = client.post("/v1/jobs", json=_tabular(wide, "none"))
    assert submitted.status_code == 201, submitted.text
    created = submitted.json()
    try:
        assert _named(created["model"]) == ["unnormalized_inputs"]
    finally:
        client.post(f"/v1/jobs/{created['id']}/cancel")


def test_no_warning_with_normalisation_on_or_spreads_close(client) -> None:
    wide = _upload(client, [1.0, 1700.0, 3.0])
    close = _upload(client, [1.0, 50.0, 3.0])  # below the 100x threshold
    for spec in (_tabular(wide, "standardize"), _tabular(wide, "minmax"),
                 _tabular(close, "none"), _tabular("moons", "none")):
        response = client.post("/v1/jobs/validate", json=spec)
        assert response.status_code == 200, response.text
        assert _named(response.json()) == [], spec


def test_images_and_uploads_without_per_feature_spreads_are_not_judged() -> None:
    stds = {"per_feature": {"mean": [0.0] * 4, "std": [0.01, 1.0, 1.0, 5.0]}}

    def info(shape: tuple[int, ...]) -> datasets.DatasetInfo:
        return datasets.DatasetInfo("up", "classification", shape, 2, (), 100, "uploaded",
                                    sha256="0" * 64)

    def lookup(stats: dict):
        return lambda key: {"feature_stats": stats}

    spec = DatasetSpec(name="up", normalize="none")
    assert unnormalized_inputs(spec, info((4,)), lookup(stds)) is not None  # 500x apart
    assert unnormalized_inputs(spec, info((1, 2, 2)), lookup(stds)) is None  # pixels
    assert unnormalized_inputs(spec, info((4,)), lookup({"per_feature": None})) is None
    constant = {"per_feature": {"mean": [0.0] * 3, "std": [0.0, 1.0, 2.0]}}
    assert unnormalized_inputs(spec, info((3,)), lookup(constant)) is None  # 0 is no spread
