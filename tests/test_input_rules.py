"""Every bad input is a 4xx that names the value, never a 500: NUL characters, integers past
64 bits, JSON nested too deep, bytes that are not UTF-8, numbers for booleans and booleans
for numbers (api/input_rules.py, api/input_errors.py, models/strict.py). Also the 405s and
their Allow header (api/allowed_methods.py), and the OpenAPI document saying what is sent
(api/openapi_doc.py). Over real HTTP against the real API, except the MemoryError handler."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from tests.conftest import load_example

INT64_MAX = 2**63 - 1
NO_JOB = "00000000-0000-0000-0000-000000000000"


def spec(**changes) -> dict:
    document = copy.deepcopy(load_example("digits-mlp"))
    document.update(changes)
    return document


def problem(response) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    [found] = response.json()["detail"]
    assert found["message"].startswith(found["field"]), found
    return found


@pytest.mark.parametrize(("path", "field"), [
    (f"/v1/jobs/{NO_JOB[:8]}%00", "path.job_id"),
    ("/v1/datasets/abc%00def", "path.key"),
    ("/v1/jobs?cursor=a%00b", "query.cursor"),
    (f"/v1/jobs/{NO_JOB}/metrics?names=train_loss%00", "query.names"),
])
def test_a_nul_in_the_path_or_query_is_a_422_naming_it(client, path, field) -> None:
    response = client.get(path)
    assert response.status_code == 422, response.text
    found = problem(response)
    assert (found["field"], found["type"]) == (field, "nul_character"), found


def test_a_nul_in_a_json_string_or_key_is_a_422_naming_it(client) -> None:
    for body, field in [(spec(name="a\x00b"), "name"),
                        (spec(dataset={"name": "digits\x00"}), "dataset.name"),
                        (spec(training={"epochs": 1, "se\x00ed": 1}), "training.se\x00ed")]:
        for path in ("/v1/jobs", "/v1/jobs/validate", "/v1/gradcheck"):
            response = client.post(path, json=body)
            assert response.status_code == 422, (path, response.text)
            assert problem(response)["field"] == field, (path, response.text)


def test_a_nul_in_an_uploaded_dataset_name_is_a_4xx(client) -> None:
    response = client.post("/v1/datasets", files={"file": ("x.csv", b"a,label\n1,0\n2,1\n")},
                           data={"name": "bad\x00name"})
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize(("path", "field"), [
    (f"/v1/jobs/{NO_JOB}/checkpoints/{2**64}/download", "path.checkpoint_id"),
    (f"/v1/jobs/{NO_JOB}/metrics?since_step={2**63}", "query.since_step"),
    (f"/v1/jobs/{NO_JOB}/logs?attempt={10**30}", "query.attempt"),
    (f"/v1/jobs/{NO_JOB}/events?last_event_id={2**70}", "query.last_event_id"),
])
def test_an_integer_past_64_bits_in_the_path_or_query_is_a_422(client, path, field) -> None:
    response = client.get(path)
    assert response.status_code == 422, response.text
    found = problem(response)
    assert (found["field"], found["type"]) == (field, "int64_range"), found
    # The largest 64-bit integer is in range: the answer is about the job, not the number.
    at_max = client.get(path.replace(str(2**64), str(INT64_MAX)).replace(str(2**63), str(INT64_MAX))
                        .replace(str(10**30), str(INT64_MAX)).replace(str(2**70), str(INT64_MAX)))
    assert at_max.status_code == 404, at_max.text


def test_an_integer_past_64_bits_in_a_header_or_body_is_a_422(client) -> None:
    response = client.get(f"/v1/jobs/{NO_JOB}/events", headers={"Last-Event-ID": str(2**64)})
    assert problem(response)["field"] == "header.last-event-id"
    for body, field in [(spec(training={"epochs": 1, "seed": 2**64}), "training.seed"),
                        (spec(training={"epochs": -(2**63) - 1}), "training.epochs")]:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 422, response.text
        assert problem(response) == {**problem(response), "field": field, "type": "int64_range"}


@pytest.mark.parametrize("depth", [65, 100_000])
def test_json_nested_too_deep_is_a_422(client, depth) -> None:
    body = "[" * depth + "]" * depth
    for path in ("/v1/jobs", "/v1/jobs/validate", "/v1/gradcheck"):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, (path, response.text)
        assert problem(response)["type"] == "json_too_deep"


def test_a_body_that_is_not_utf8_is_a_422(client) -> None:
    response = client.post("/v1/jobs", content=b"\x8b\x1f\xffM\xe9",
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert problem(response)["field"] == "body"


@pytest.mark.parametrize(("section", "values", "field"), [
    ("gradcheck", 0, "gradcheck"),
    ("gradcheck", "true", "gradcheck"),
    ("regularization", {"l1": False}, "regularization.l1"),
    ("optimizer", {"type": "adam", "lr": True}, "optimizer.lr"),
    ("training", {"epochs": "3"}, "training.epochs"),
])
def test_a_number_for_a_boolean_or_a_boolean_for_a_number_is_refused(
        client, section, values, field) -> None:
    response = client.post("/v1/jobs/validate", json=spec(**{section: values}))
    assert response.status_code == 422, response.text
    assert problem(response)["field"] == field


def _spec_models() -> list[type[BaseModel]]:
    from models.strict import StrictModel

    found, todo = [], [StrictModel]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_boolean_of_the_spec_is_strict() -> None:
    import core.jobspec  # noqa: F401 - imports every spec model

    plain = [f"{cls.__name__}.{name}" for cls in _spec_models()
             for name, field in cls.model_fields.items()
             if field.annotation is bool and not any(getattr(m, "strict", False)
                                                     for m in field.metadata)]
    assert len(_spec_models()) > 30
    assert not plain, f"use StrictBool: {plain}"


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/v1/jobs/validate", "POST"),
    ("PUT", "/v1/jobs", "GET, POST"),
    ("PATCH", f"/v1/jobs/{NO_JOB}", "DELETE, GET"),
    ("GET", f"/v1/jobs/{NO_JOB}/cancel", "POST"),
    ("DELETE", "/v1/gradcheck", "POST"),
])
def test_a_method_the_path_does_not_take_is_a_405_with_every_allowed_one(
        client, method, path, allow) -> None:
    response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    assert method in response.json()["detail"] and allow.split(",")[0] in response.json()["detail"]


def test_the_openapi_document_describes_the_errors_sent(client) -> None:
    doc = client.get("/openapi.json").json()
    text = json.dumps(doc)
    assert "HTTPValidationError" not in text and '"loc"' not in text
    field_error = doc["components"]["schemas"]["FieldError"]
    assert sorted(field_error["required"]) == ["field", "message", "type"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if "{" in path:
                assert "404" in responses, (method, path)
            if operation.get("parameters") or "requestBody" in operation:
                schema = responses["422"]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ValidationErrorOut"}, (method, path)
            for parameter in operation.get("parameters", []):
                assert '"null"' not in json.dumps(parameter["schema"]), (method, path, parameter)
    # Integers are bounded as api/input_rules.py bounds them.
    integers: list[dict] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("type") == "integer":
                integers.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert len(integers) > 20
    for schema in integers:
        assert schema.get("maximum", schema.get("exclusiveMaximum")) <= INT64_MAX, schema
        assert schema.get("minimum", schema.get("exclusiveMinimum")) >= -INT64_MAX - 1, schema
    # A real 422 has the documented shape.
    sent = client.post("/v1/jobs/validate", json=spec(training={"epochs": 0})).json()
    assert set(sent) == {"detail"} and set(sent["detail"][0]) == {"field", "message", "type"}


def test_memory_error_is_a_413(fresh_database: str, broker_url: str, tmp_path: Path) -> None:
    """The handler of the real app; the MemoryError comes from a route the test adds, since
    no request can be counted on to exhaust a test machine's memory."""
    from api.main import create_app
    from core.settings import Settings

    app = create_app(Settings(database_url=fresh_database, broker_url=broker_url,
                              data_dir=tmp_path))

    @app.get("/test-memory-error", response_model=None)
    def exhausted() -> None:
        raise MemoryError

    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as http:
        response = http.get("/test-memory-error")
    assert response.status_code == 413, response.text
    assert "smaller" in response.json()["detail"]
