"""A body the API cannot read as JSON is answered with what to change: where the JSON breaks
(line and column), or the Content-Type to send. Over HTTP against the real API, on every
route whose OpenAPI request body is JSON only."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import load_example


@pytest.fixture(scope="module")
def json_routes(api_url: str) -> list[str]:
    """The POST paths whose documented body is application/json and nothing else (the
    dataset upload takes multipart too and answers its own 415)."""
    paths = httpx.get(f"{api_url}/openapi.json", timeout=30).json()["paths"]
    routes = [path for path, operations in paths.items()
              if list(operations.get("post", {}).get("requestBody", {}).get("content", {}))
              == ["application/json"]]
    assert {"/v1/jobs", "/v1/jobs/validate", "/v1/gradcheck"} <= set(routes)
    for path in routes:
        assert "415" in paths[path]["post"]["responses"], path  # documented as sent
    return routes


def test_malformed_json_is_a_422_with_its_line_and_column(client, json_routes) -> None:
    lines = json.dumps(load_example("digits-mlp"), indent=2).splitlines()
    broken = next(i for i, line in enumerate(lines) if i > 1 and line.endswith(","))
    lines[broken] = lines[broken].removesuffix(",")  # the next line is where it breaks
    body = "\n".join(lines)
    with pytest.raises(json.JSONDecodeError) as raised:
        json.loads(body)
    expected = raised.value
    assert expected.lineno == broken + 2 > 1 and expected.colno > 1
    for path in json_routes:
        response = client.post(path, content=body.encode(),
                               headers={"content-type": "application/json"})
        assert response.status_code == 422, (path, response.text)
        [problem] = response.json()["detail"]
        assert problem["field"] == "body" and problem["type"] == "json_invalid", problem
        message = problem["message"]
        assert message.startswith("body: not valid JSON"), message
        assert f"line {expected.lineno} column {expected.colno}" in message, message


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded",
                                          "text/plain"])
def test_a_json_body_without_a_json_content_type_says_to_send_one(
        client, json_routes, content_type) -> None:
    """curl -d without -H sends application/x-www-form-urlencoded; some clients send none."""
    body = json.dumps(load_example("digits-mlp")).encode()
    request_headers = {"content-type": content_type} if content_type else {}
    for path in json_routes:
        request = client.build_request("POST", path, content=body, headers=request_headers)
        assert request.headers.get("content-type") == content_type  # httpx adds none
        response = client.send(request)
        assert response.status_code == 415, (path, content_type, response.text)
        [problem] = response.json()["detail"]
        assert problem["field"] == "header.content-type", problem
        assert "Content-Type: application/json" in problem["message"], problem
        assert "valid dictionary" not in problem["message"], problem


def test_a_json_body_with_a_json_content_type_still_works(client) -> None:
    response = client.post("/v1/jobs/validate", content=json.dumps(load_example("digits-mlp")),
                           headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200, response.text
