"""Jobs on uploaded datasets: a job names one by name or id, is validated against it,
records the version (sha256) it trained on, and trains the same whether its inputs are held
on the device or streamed from memory-mapped files.

Datasets are made directly with core/dataset_store.py and a row in core/repo/datasets.py,
as an upload would leave them; jobs go through the real API and worker.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sqlalchemy.orm import Session

from core import dataset_store
from core.dataset_summary import class_counts, feature_stats
from core.db import make_engine
from core.jobspec import JobSpec, validate_job
from core.repo import datasets as dataset_repo
from core.settings import Settings
from core.uploads.parsed import Parsed
from models.build import build_model
from models.losses import build_loss
from tests.conftest import wait_for_state
from worker.data import prepare_data
from worker.optim import build_optimizer
from worker.streamed import StreamedInputs
from worker.train import train

CPU = torch.device("cpu")
FEATURES = 6
CLASSES = 3


@dataclass
class Uploaded:
    id: str
    name: str
    sha256: str
    parsed: Parsed


def blobs(n: int, seed: int, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian clusters in FEATURES dimensions; `offset` moves them all,
    so that a split with another offset has other statistics."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    centres = np.random.default_rng(99).normal(0.0, 4.0, (CLASSES, FEATURES))
    x = centres[y] + rng.normal(0.0, 1.0, (n, FEATURES)) + offset
    return (x * 10 + 50).astype(np.float32), y.astype(np.int64)  # far from standardised


def with_splits() -> Parsed:
    x, y = blobs(300, 1)
    xv, yv = blobs(60, 2, offset=0.5)
    xt, yt = blobs(90, 3, offset=-0.5)
    return Parsed("classification", x, y, xv, yv, xt, yt, class_names=["a", "b", "c"])


def train_only() -> Parsed:
    x, y = blobs(400, 4)
    return Parsed("classification", x, y)


@pytest.fixture(scope="module")
def make_dataset(settings: Settings) -> Iterator:
    engine = make_engine(settings, pool_size=1)

    def make(parsed: Parsed) -> Uploaded:
        stored = dataset_store.store(parsed, settings.data_dir / "datasets")
        meta = stored.meta
        name = f"upload-{uuid.uuid4().hex[:8]}"
        with Session(engine) as session, session.begin():
            row = dataset_repo.add(
                session, name=name, sha256=stored.sha256, format="npz", task=meta["task"],
                input_shape=meta["input_shape"], target_shape=meta["target_shape"],
                num_classes=meta["num_classes"], class_names=meta["class_names"],
                class_counts=class_counts(parsed), splits=meta["splits"],
                feature_stats=feature_stats(parsed.x_train),
                bytes=stored.bytes, source={"filename": "test.npz"},
            )
            row_id = str(row.id)
        return Uploaded(row_id, name, stored.sha256, parsed)

    yield make
    engine.dispose()


@pytest.fixture(scope="module")
def split_set(make_dataset) -> Uploaded:
    return make_dataset(with_splits())


@pytest.fixture(scope="module")
def plain_set(make_dataset) -> Uploaded:
    return make_dataset(train_only())


def job(dataset: dict, **training) -> dict:
    return {
        "dataset": dataset,
        "model": {"layers": [{"type": "linear", "out_features": 16}, {"type": "relu"},
                             {"type": "linear", "out_features": CLASSES}]},
        "optimizer": {"type": "adam", "lr": 0.01},
        "training": {"epochs": 3, "batch_size": 32, "seed": 0, **training},
    }




def _meta(up: Uploaded, settings: Settings) -> dict:
    return dataset_store.read_meta(settings.data_dir / "datasets", up.sha256)


def _error(response) -> dict:
    assert response.status_code == 422, response.text
    return response.json()["detail"][0]


# --- validation over HTTP ------------------------------------------------------------------


def test_a_job_validates_against_an_uploaded_dataset_by_name_and_by_id(client, split_set):
    for ref in ({"name": split_set.name}, {"id": split_set.id}):
        response = client.post("/v1/jobs/validate", json=job(ref))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["dataset"]["sha256"] == split_set.sha256
        assert body["dataset"]["id"] == split_set.id
        assert body["dataset"]["input_shape"] == [FEATURES]
        assert body["dataset"]["num_classes"] == CLASSES
        assert (body["dataset"]["val_samples"], body["dataset"]["test_samples"]) == (60, 90)
        assert body["model"]["layers"][-1]["output_shape"] == [CLASSES]
        assert body["warnings"] == []


def test_the_sha256_a_client_gives_must_match(client, split_set):
    same = client.post("/v1/jobs/validate",
                       json=job({"name": split_set.name, "sha256": split_set.sha256}))
    assert same.status_code == 200, same.text
    other = _error(client.post("/v1/jobs/validate",
                               json=job({"name": split_set.name, "sha256": "0" * 64})))
    assert other["field"] == "dataset.sha256"
    assert split_set.sha256 in other["message"] and "remove dataset.sha256" in other["message"]


@pytest.mark.parametrize(("dataset", "field", "phrase"), [
    ({"name": "no-such-data"}, "dataset.name", "GET /v1/datasets"),
    ({"id": str(uuid.UUID(int=7))}, "dataset.id", "GET /v1/datasets lists the datasets"),
    ({"val_fraction": 0.2}, "dataset", "give dataset.name"),
    ({"name": "digits", "sha256": "0" * 64}, "dataset", "remove dataset.sha256"),
    ({"id": "not-a-uuid"}, "dataset.id", "UUID"),
])
def test_a_bad_dataset_reference_is_422_naming_the_field(client, dataset, field, phrase):
    for endpoint in ("/v1/jobs/validate", "/v1/jobs", "/v1/gradcheck"):
        detail = _error(client.post(endpoint, json=job(dataset)))
        assert detail["field"] == field, detail
        assert detail["message"].startswith(f"{field}: "), detail
        assert phrase in detail["message"], detail


def test_name_and_id_of_two_datasets_is_422(client, split_set, plain_set):
    detail = _error(client.post("/v1/jobs/validate",
                                json=job({"name": plain_set.name, "id": split_set.id})))
    assert detail["field"] == "dataset.name"
    assert split_set.name in detail["message"] and "only one of the two" in detail["message"]


@pytest.mark.parametrize("option", [{"n_samples": 100}, {"noise": 0.1}, {"classes": 3}])
def test_built_in_options_on_an_uploaded_dataset_are_422(client, split_set, option):
    for ref in ({"name": split_set.name}, {"id": split_set.id}):
        detail = _error(client.post("/v1/jobs/validate", json=job({**ref, **option})))
        assert detail["field"] == "dataset"
        assert f"{next(iter(option))} applies to built-in datasets only" in detail["message"]


def test_shape_and_loss_checks_hold_for_an_uploaded_dataset(client, split_set):
    wrong_width = job({"name": split_set.name})
    wrong_width["model"]["layers"][-1]["out_features"] = 5
    detail = _error(client.post("/v1/jobs/validate", json=wrong_width))
    assert detail["field"] == "model.layers[2]"
    assert f"{split_set.name} has 3 classes" in detail["message"]
    regression_loss = {**job({"name": split_set.name}), "loss": {"type": "mse"}}
    detail = _error(client.post("/v1/jobs/validate", json=regression_loss))
    assert detail["field"] == "loss.type" and "use cross_entropy" in detail["message"]


def test_own_validation_split_counts_and_val_fraction_is_warned_about(client, split_set,
                                                                      plain_set):
    body = client.post("/v1/jobs/validate",
                       json=job({"name": split_set.name, "val_fraction": 0.3})).json()
    assert any("val_fraction 0.3 does not apply" in w for w in body["warnings"]), body
    # Early stopping needs validation: the dataset's own split is enough, val_fraction 0 or not.
    stopping = job({"name": split_set.name, "val_fraction": 0.0},
                   early_stopping={"monitor": "val_loss", "patience": 2})
    assert client.post("/v1/jobs/validate", json=stopping).status_code == 200
    no_val = job({"name": plain_set.name, "val_fraction": 0.0},
                 early_stopping={"monitor": "val_loss", "patience": 2})
    assert _error(client.post("/v1/jobs/validate", json=no_val))["field"] == (
        "training.early_stopping")


def test_estimated_steps_count_the_datasets_own_splits(settings, split_set, plain_set):
    lookup = _lookup(settings, split_set, plain_set)
    own = validate_job(JobSpec.model_validate(job({"name": split_set.name})), settings, lookup)
    assert own.n_train == 300  # every training row: val and test are the dataset's own
    assert own.estimated_steps == 3 * math.ceil(300 / 32)
    cut = validate_job(JobSpec.model_validate(job({"name": plain_set.name})), settings, lookup)
    data = prepare_data(cut.spec, CPU, settings.data_dir / "datasets")
    assert abs(cut.n_train - len(data.x_train)) <= CLASSES  # stratified rounding per class
    # Stratified: 20% (test) then 10% (val) of each class, rounded per class.
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (286, 33, 81)


def _lookup(settings: Settings, *uploads: Uploaded):
    def lookup(key):
        for up in uploads:
            if key in (up.name, uuid.UUID(up.id)):
                return {**_meta(up, settings), "id": up.id, "name": up.name, "sha256": up.sha256}
        return None
    return lookup


# --- a job through the API and the worker ---------------------------------------------------


def test_a_job_trains_on_an_uploaded_dataset_and_records_its_version(client, worker, split_set):
    response = client.post("/v1/jobs", json={**job({"name": split_set.name}), "gradcheck": True})
    assert response.status_code == 201, response.text
    done = wait_for_state(client, response.json()["id"], {"succeeded", "failed"}, timeout=120)
    assert done["state"] == "succeeded", done
    recorded = done["spec"]["dataset"]
    assert (recorded["name"], recorded["id"], recorded["sha256"]) == (
        split_set.name, split_set.id, split_set.sha256)
    summary = done["summary"]
    assert summary["gradcheck"]["verdict"] in ("correct", "worth a look"), summary["gradcheck"]
    assert summary["test"]["test_accuracy"] >= 0.9, summary
    assert summary["latest"]["val_accuracy"] >= 0.9, summary
    assert done["progress"]["total_steps"] == 3 * math.ceil(300 / 32)


def test_gradcheck_takes_its_batch_from_an_uploaded_dataset(client, plain_set):
    response = client.post("/v1/gradcheck?batch_size=6", json=job({"id": plain_set.id}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["batch_size"] == 6 and body["verdict"] in ("correct", "worth a look"), body


# --- splits, normalisation and the two loading paths, in process ---------------------------


def _resolved(settings: Settings, up: Uploaded, **dataset) -> JobSpec:
    spec = JobSpec.model_validate(job({"name": up.name, **dataset}))
    return validate_job(spec, settings, _lookup(settings, up)).spec


def test_the_datasets_own_splits_are_used_and_statistics_come_from_training_only(
    settings, split_set
):
    root = settings.data_dir / "datasets"
    parsed = split_set.parsed
    for normalize in ("standardize", "minmax"):
        spec = _resolved(settings, split_set, normalize=normalize)
        memory = prepare_data(spec, CPU, root)
        streamed = prepare_data(spec, CPU, root, device_data_mb=0)
        assert not memory.streamed and streamed.streamed
        assert isinstance(streamed.x_train, StreamedInputs)
        assert (len(memory.x_train), len(memory.x_val), len(memory.x_test)) == (300, 60, 90)
        assert torch.equal(memory.y_val, torch.from_numpy(parsed.y_val))
        assert torch.equal(memory.y_test, torch.from_numpy(parsed.y_test))
        train64 = parsed.x_train.astype(np.float64)
        if normalize == "standardize":
            expected = {"mean": train64.mean(0), "std": train64.std(0)}
        else:
            expected = {"min": train64.min(0), "max": train64.max(0)}
        for key, value in expected.items():
            for data in (memory, streamed):
                assert torch.equal(data.normalization[key],
                                   torch.from_numpy(value.astype(np.float32))), key
        # Validation and test are scaled by the training split's statistics, not their own:
        # their offsets survive.
        for data in (memory, streamed):
            for split, raw in (("val", parsed.x_val), ("test", parsed.x_test)):
                x = getattr(data, f"x_{split}")[:]
                own = torch.from_numpy(raw)
                assert torch.equal(x, _scaled(own, data.normalization)), split
        assert torch.equal(memory.x_train, streamed.x_train[:])


def _scaled(x: torch.Tensor, stats: dict[str, torch.Tensor]) -> torch.Tensor:
    if "mean" in stats:
        return (x - stats["mean"]) / stats["std"]
    return (x - stats["min"]) / (stats["max"] - stats["min"])


def test_without_own_splits_val_and_test_are_cut_stratified(settings, plain_set):
    spec = _resolved(settings, plain_set, val_fraction=0.2, seed=5)
    root = settings.data_dir / "datasets"
    memory = prepare_data(spec, CPU, root)
    streamed = prepare_data(spec, CPU, root, device_data_mb=0)
    assert (len(memory.x_train), len(memory.x_val), len(memory.x_test)) == (256, 63, 81)
    for y in (memory.y_train, memory.y_val, memory.y_test):
        counts = torch.bincount(y, minlength=CLASSES)
        assert counts.max() - counts.min() <= 1, counts  # stratified: classes stay balanced
    # The training split's statistics alone, not those of every stored row.
    parsed = plain_set.parsed
    everything = torch.from_numpy(parsed.x_train.mean(0))
    assert not torch.allclose(memory.normalization["mean"], everything, atol=1e-4)
    assert torch.allclose(memory.x_train.mean(0), torch.zeros(FEATURES), atol=1e-5)
    for key in memory.normalization:
        assert torch.equal(memory.normalization[key], streamed.normalization[key])
    assert torch.equal(memory.x_val, streamed.x_val[:])
    assert torch.equal(memory.x_test, streamed.x_test[:])
    # Another seed cuts another validation split; the test split stays the same.
    raw = [prepare_data(_resolved(settings, plain_set, val_fraction=0.2, seed=seed,
                                  normalize="none"), CPU, root) for seed in (5, 6)]
    assert torch.equal(raw[0].x_test, raw[1].x_test)
    assert not torch.equal(raw[0].x_val, raw[1].x_val)


def _train(spec: JobSpec, root, device_data_mb: float):
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, CPU, root, device_data_mb=device_data_mb)
    model, _ = build_model(spec.model, data.input_shape)
    optimizer = build_optimizer(spec, model)
    final = train(spec, model, optimizer, build_loss(spec.loss), data, [])
    return data, model, final


@pytest.mark.parametrize("dataset", [{}, {"val_fraction": 0.25,
                                          "augment": [{"type": "gaussian_noise", "std": 0.1}]}])
def test_streamed_and_in_memory_training_are_identical(settings, plain_set, dataset):
    spec = _resolved(settings, plain_set, **dataset)
    root = settings.data_dir / "datasets"
    memory, model_a, final_a = _train(spec, root, 1024)
    streamed, model_b, final_b = _train(spec, root, 0)
    assert not memory.streamed and streamed.streamed
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    timing = ("samples_per_s",)
    assert {k: v for k, v in final_a.items() if k not in timing} == {
        k: v for k, v in final_b.items() if k not in timing}
    assert final_a["test_accuracy"] >= 0.9, final_a
