"""The HTTP contract around specs, over real HTTP against a real API and PostgreSQL: bad specs
answered 422 naming the field, shape and parameter summaries checked against torch.nn built
by hand, the OpenAPI example, 404s, keyset pagination, Idempotency-Key, datasets, health.

No worker runs here: submitted jobs stay queued (or are run by a worker another module
started) and are cancelled at teardown; nothing asserts on their state.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import httpx
import pytest
import torch
from torch import nn

from tests.conftest import load_example

ENDPOINTS = ("/v1/jobs/validate", "/v1/jobs")


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _all_jobs(client: httpx.Client) -> list[dict]:
    items, cursor = [], None
    while True:
        params = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/jobs", params=params)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def _tiny_spec(name: str) -> dict:
    """A valid job that would train in a second if a worker happened to take it."""
    return {
        "name": name,
        "dataset": {"name": "moons", "n_samples": 100},
        "model": {"layers": [{"type": "linear", "out_features": 2}]},
        "training": {"epochs": 1, "batch_size": 32},
    }


@pytest.fixture
def submit(client: httpx.Client) -> Iterator[Callable[..., httpx.Response]]:
    """POST /v1/jobs; every job created is cancelled at teardown so no worker spends time."""
    created: list[str] = []

    def post(spec: dict, **kwargs) -> httpx.Response:
        response = client.post("/v1/jobs", json=spec, **kwargs)
        if response.status_code in (200, 201):
            created.append(response.json()["id"])
        return response

    yield post
    for job_id in set(created):
        client.post(f"/v1/jobs/{job_id}/cancel")  # 409 when it already ended: fine


# --- bad specs -------------------------------------------------------------------------------


def _mlp(**changes) -> Callable[[dict], None]:
    """Replace top-level sections of the digits MLP example."""
    return lambda spec: spec.update(copy.deepcopy(changes))


def _layers(layers: list[dict], dataset: dict | None = None) -> Callable[[dict], None]:
    def change(spec: dict) -> None:
        spec["model"]["layers"] = copy.deepcopy(layers)
        if dataset is not None:
            spec["dataset"] = dict(dataset)

    return change


def _set(path: str, value) -> Callable[[dict], None]:
    """Set `a.b.2.c` in the spec (integers index lists)."""
    *parents, last = path.split(".")

    def change(spec: dict) -> None:
        node = spec
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return change


def _drop(key: str) -> Callable[[dict], None]:
    return lambda spec: spec.pop(key)


FLAT_HEAD = [{"type": "flatten"}, {"type": "linear", "out_features": 10}]

# (id, change to examples/digits-mlp.json, expected detail[0].field, phrase in the message)
BAD_SPECS = [
    ("linear-after-conv2d-without-flatten",
     _layers([{"type": "conv2d", "out_channels": 4}, {"type": "linear", "out_features": 10}]),
     "model.layers[1]", "add a flatten layer first"),
    ("conv2d-on-1d-data",
     _layers([{"type": "conv2d", "out_channels": 4}, {"type": "flatten"},
              {"type": "linear", "out_features": 3}], {"name": "spirals"}),
     "model.layers[0]", "use linear layers for feature vectors"),
    ("conv1d-on-an-image",
     _layers([{"type": "conv1d", "out_channels": 4}, *FLAT_HEAD]),
     "model.layers[0]", "use conv2d"),
    ("kernel-larger-than-input",
     _layers([{"type": "conv2d", "out_channels": 4, "kernel_size": 9}, *FLAT_HEAD]),
     "model.layers[0]", "lower kernel_size"),
    ("kernel-larger-than-input-after-stride",
     _layers([{"type": "conv2d", "out_channels": 4, "stride": 4},
              {"type": "conv2d", "out_channels": 4, "kernel_size": 3}, *FLAT_HEAD]),
     "model.layers[1]", "input (4, 2, 2) is smaller than the kernel"),
    ("pool-larger-than-input",
     _layers([{"type": "maxpool2d", "kernel_size": 16}, *FLAT_HEAD]),
     "model.layers[0]", "lower kernel_size"),
    ("padding-same-with-stride-2",
     _layers([{"type": "conv2d", "out_channels": 4, "padding": "same", "stride": 2},
              *FLAT_HEAD]),
     "model.layers[0]", "padding 'same' needs stride 1"),
    ("reshape-to-wrong-size",
     _layers([{"type": "reshape", "shape": [7, 9]}, *FLAT_HEAD]),
     "model.layers[0]", "the shape must hold 64 values"),
    ("negative-learning-rate", _set("optimizer.lr", -0.1),
     "optimizer.lr", "greater than 0"),
    ("adam-beta-one", _set("optimizer.betas", [0.9, 1.0]),
     "optimizer.betas[1]", "less than 1"),
    ("dropout-p-one", _set("model.layers.3.p", 1.0),
     "model.layers[3].p", "less than 1"),
    ("unknown-layer-type", _set("model.layers.2", {"type": "swish"}),
     "model.layers[2]", "unknown type 'swish'"),
    ("unknown-field-in-layer", _set("model.layers.1.units", 5),
     "model.layers[1].units", "unknown field; remove it"),
    ("unknown-top-level-field", _mlp(epochs=3),
     "epochs", "unknown field; remove it"),
    ("unknown-dataset", _mlp(dataset={"name": "mnist"}),
     "dataset.name", "the built-in datasets are: blobs, digits, moons, sine, spirals"),
    ("option-not-applicable", _set("dataset.n_samples", 100),
     "dataset", "digits takes no n_samples; remove it"),
    ("out-features-not-classes", _set("model.layers.4.out_features", 7),
     "model.layers[4]", "end with a linear layer with out_features 10"),
    ("cross-entropy-on-regression",
     _layers([{"type": "linear", "out_features": 1}], {"name": "sine"}),
     "loss.type", "sine is regression: use mse"),
    ("mse-on-classification", _mlp(loss={"type": "mse"}),
     "loss.type", "use cross_entropy"),
    ("epochs-zero", _set("training.epochs", 0),
     "training.epochs", "greater than or equal to 1"),
    ("epochs-over-server-limit", _set("training.epochs", 10_001),
     "training.epochs", "at most 10000 on this server"),
    ("batch-size-zero", _set("training.batch_size", 0),
     "training.batch_size", "greater than or equal to 1"),
    ("missing-model", _drop("model"),
     "model", "required field is missing"),
    ("empty-layer-list", _layers([]),
     "model.layers", "at least 1 item"),
]


def _path_named(message: str) -> str:
    """The path a message starts with, less the ` (linear)` layer label:
    `model.layers[3] (dropout).p: ...` -> `model.layers[3].p`."""
    prefix = message.split(": ", 1)[0]
    return re.sub(r" \([a-z0-9_]+\)", "", prefix)


def _assert_names_field(response: httpx.Response, field: str, phrase: str) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    first = detail[0]
    assert set(first) == {"field", "message", "type"}, first
    assert first["field"] == field, first
    assert _path_named(first["message"]) == field, first["message"]
    assert phrase in first["message"], first["message"]


@pytest.mark.parametrize(("change", "field", "phrase"),
                         [pytest.param(*case[1:], id=case[0]) for case in BAD_SPECS])
def test_a_bad_spec_is_422_naming_the_field_and_creates_no_job(
    client, submit, change, field, phrase
):
    spec = load_example("digits-mlp")
    spec["name"] = _unique("bad-spec")
    change(spec)
    before = len(_all_jobs(client))
    for endpoint in ENDPOINTS:
        response = submit(spec) if endpoint == "/v1/jobs" else client.post(endpoint, json=spec)
        _assert_names_field(response, field, phrase)
    jobs = _all_jobs(client)
    assert len(jobs) == before
    assert not [j for j in jobs if j["name"] == spec.get("name")]


def test_a_body_that_is_not_json_is_422_naming_the_body(client):
    before = len(_all_jobs(client))
    for endpoint in ENDPOINTS:
        response = client.post(endpoint, content=b"{",
                               headers={"content-type": "application/json"})
        _assert_names_field(response, "body", "not valid JSON")
    assert len(_all_jobs(client)) == before


def test_every_bad_spec_case_is_distinct():
    assert len(BAD_SPECS) >= 14
    assert len({case[0] for case in BAD_SPECS}) == len(BAD_SPECS)


# --- shapes and parameters against torch.nn ----------------------------------------------------


DIGITS_INPUT = (1, 8, 8)

REFERENCE_MODULES = {
    "digits-mlp": lambda: [
        nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10),
    ],
    "digits-cnn": lambda: [
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(128, 10),
    ],
}


def _reference_summary(modules: list[nn.Module], input_shape: tuple[int, ...]) -> list[dict]:
    x = torch.zeros((1, *input_shape))
    rows = []
    with torch.no_grad():
        for module in modules:
            x = module.eval()(x)
            rows.append({"output_shape": list(x.shape[1:]),
                         "params": sum(p.numel() for p in module.parameters())})
    return rows


def test_reference_counts_are_what_torch_says():
    assert sum(p.numel() for p in nn.Linear(64, 128).parameters()) == 8320
    assert sum(p.numel() for p in nn.Conv2d(1, 16, 3).parameters()) == 160


@pytest.mark.parametrize("example", sorted(REFERENCE_MODULES))
def test_validate_reports_shapes_and_params_that_torch_agrees_with(client, example):
    spec = load_example(example)
    assert client.get("/v1/datasets/digits").json()["input_shape"] == list(DIGITS_INPUT)
    response = client.post("/v1/jobs/validate", json=spec)
    assert response.status_code == 200, response.text
    model = response.json()["model"]

    expected = _reference_summary(REFERENCE_MODULES[example](), DIGITS_INPUT)
    got = [{"output_shape": layer["output_shape"], "params": layer["params"]}
           for layer in model["layers"]]
    assert got == expected
    assert [layer["type"] for layer in model["layers"]] == [
        layer["type"] for layer in spec["model"]["layers"]
    ]
    assert model["total_params"] == sum(row["params"] for row in expected)
    assert model["input_shape"] == list(DIGITS_INPUT)
    assert model["output_shape"] == [10]
    assert response.json()["dataset"]["num_classes"] == 10


def test_validate_warns_about_batches_larger_than_the_training_split(client):
    spec = _tiny_spec("warn") | {"training": {"epochs": 1, "batch_size": 5000}}
    spec["dataset"] = {"name": "moons", "n_samples": 100, "val_fraction": 0.0}
    response = client.post("/v1/jobs/validate", json=spec)
    assert response.status_code == 200, response.text
    warnings = " ".join(response.json()["warnings"])
    assert "training.batch_size 5000 exceeds the training split" in warnings
    assert "dataset.val_fraction is 0" in warnings


# --- OpenAPI ---------------------------------------------------------------------------------


def test_the_openapi_example_for_submit_validates(client):
    document = client.get("/openapi.json")
    assert document.status_code == 200
    body = document.json()["paths"]["/v1/jobs"]["post"]["requestBody"]["content"][
        "application/json"]
    examples = [e["value"] for e in body.get("examples", {}).values()]
    if "example" in body:
        examples.append(body["example"])
    assert examples, body
    for example in examples:
        response = client.post("/v1/jobs/validate", json=example)
        assert response.status_code == 200, response.text
    assert client.get("/docs").status_code == 200


# --- 404 and malformed ids -------------------------------------------------------------------


def test_an_unknown_job_is_404_naming_the_id(client):
    job_id = str(uuid.uuid4())
    for path in ("", "/metrics", "/checkpoints", "/checkpoints/1/download"):
        response = client.get(f"/v1/jobs/{job_id}{path}")
        assert response.status_code == 404, (path, response.text)
        assert job_id in response.json()["detail"]
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 404


def test_a_malformed_job_id_is_422(client):
    response = client.get("/v1/jobs/not-a-uuid")
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"].endswith("job_id")


def test_downloading_a_checkpoint_that_does_not_exist_is_404(client, submit):
    job_id = submit(_tiny_spec(_unique("no-checkpoint"))).json()["id"]
    response = client.get(f"/v1/jobs/{job_id}/checkpoints/987654321/download")
    assert response.status_code == 404
    assert "987654321" in response.json()["detail"]
    assert client.get(f"/v1/jobs/{job_id}/checkpoints/abc/download").status_code == 422


# --- listing -----------------------------------------------------------------------------------


def test_listing_pages_newest_first_without_repeats_or_gaps(client, submit):
    prefix = _unique("page")
    submitted = []
    for i in range(5):
        response = submit(_tiny_spec(f"{prefix}-{i}"))
        assert response.status_code == 201, response.text
        submitted.append(response.json()["id"])

    seen: list[dict] = []
    cursor = None
    for _ in range(1000):
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/jobs", params=params)
        assert page.status_code == 200, page.text
        items = page.json()["items"]
        assert len(items) <= 2
        seen += items
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    ids = [item["id"] for item in seen]
    assert len(ids) == len(set(ids)), "a job appeared on two pages"
    stamps = [datetime.fromisoformat(item["created_at"]) for item in seen]
    assert stamps == sorted(stamps, reverse=True)
    mine = [item["id"] for item in seen if item["name"].startswith(prefix)]
    assert mine == submitted[::-1]


def test_listing_filters_by_state(client, submit):
    submit(_tiny_spec(_unique("state-filter")))
    page = client.get("/v1/jobs", params={"state": "queued", "limit": 500})
    assert page.status_code == 200
    assert all(item["state"] == "queued" for item in page.json()["items"])


@pytest.mark.parametrize(("params", "field"), [
    ({"state": "bogus"}, "state"), ({"cursor": "garbage"}, "cursor"), ({"limit": 0}, "limit"),
])
def test_listing_rejects_bad_query_parameters(client, params, field):
    response = client.get("/v1/jobs", params=params)
    assert response.status_code == 422, response.text
    assert field in str(response.json()["detail"])


# --- Idempotency-Key -----------------------------------------------------------------------------


def test_the_same_idempotency_key_and_body_return_the_same_job(client, submit):
    spec = _tiny_spec(_unique("idem"))
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    first = submit(spec, headers=headers)
    assert first.status_code == 201, first.text
    again = submit(spec, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]

    other = submit(spec | {"name": spec["name"] + "-other"}, headers=headers)
    assert other.status_code == 409, other.text
    assert "Idempotency-Key" in other.json()["detail"]
    assert [j["id"] for j in _all_jobs(client) if j["name"].startswith(spec["name"])] == [
        first.json()["id"]
    ]

    fresh = submit(spec, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert fresh.status_code == 201
    assert fresh.json()["id"] != first.json()["id"]


# --- datasets and health -------------------------------------------------------------------------


def test_datasets_lists_the_builtins_with_input_shapes(client):
    response = client.get("/v1/datasets")
    assert response.status_code == 200
    shapes = {d["name"]: d["input_shape"] for d in response.json() if d["builtin"]}
    assert shapes == {"blobs": [2], "digits": [1, 8, 8], "moons": [2], "sine": [1],
                      "spirals": [2], "zones": [2]}
    digits = client.get("/v1/datasets/digits").json()
    assert (digits["task"], digits["num_classes"], digits["n_samples"]) == (
        "classification", 10, 1797)
    assert client.get("/v1/datasets/sine").json()["task"] == "regression"


def test_an_unknown_dataset_is_404(client):
    response = client.get("/v1/datasets/nope")
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is True
