"""Oversized bodies are refused with 413 before they are parsed, whether or not they declare
their length."""

from __future__ import annotations

from tests.conftest import load_example


def test_a_body_over_the_limit_is_refused(client):
    response = client.post("/v1/jobs", content=b" " * 300_000,
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "larger than 262144 bytes" in response.json()["detail"]


def test_a_chunked_body_over_the_limit_is_refused(client):
    def chunks():
        for _ in range(40):
            yield b" " * 10_000

    response = client.post("/v1/jobs/validate", content=chunks(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_a_chunked_body_under_the_limit_is_served(client):
    import json

    body = json.dumps(load_example("digits-mlp")).encode()
    response = client.post("/v1/jobs/validate", content=iter([body[:50], body[50:]]),
                           headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json()["model"]["total_params"] == 9610
