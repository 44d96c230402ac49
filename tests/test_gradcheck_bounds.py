"""POST /v1/gradcheck is bounded (issue 15): a network whose check would run hundreds of
forwards of a wide convolution over a large batch, or hold more activations than the API
gives it, is a 422 that says what to change, answered at once and before anything is built.
Real API process."""

from __future__ import annotations

import time


def _wide_cnn(channels: int, depth: int) -> dict:
    conv = {"type": "conv2d", "out_channels": channels, "kernel_size": 3, "padding": "same"}
    return {
        "dataset": {"name": "digits"},
        "model": {"layers": [*([conv, {"type": "relu"}] * depth), {"type": "flatten"},
                             {"type": "linear", "out_features": 10}]},
        "training": {"epochs": 1, "batch_size": 32, "seed": 0},
    }


def test_a_check_that_would_take_minutes_is_refused_at_once(client):
    started = time.monotonic()
    response = client.post("/v1/gradcheck", json=_wide_cnn(64, 4), params={"batch_size": 64})
    assert time.monotonic() - started < 10
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert "floating-point operations" in detail["message"]
    assert "batch_size" in detail["message"] and '"gradcheck": true' in detail["message"]


def test_a_check_whose_activations_are_too_large_is_refused(client):
    spec = _wide_cnn(8192, 1)  # 164k parameters, but 1M activations per sample
    spec["model"]["layers"].insert(2, {"type": "maxpool2d", "kernel_size": 8})
    response = client.post("/v1/gradcheck", json=spec, params={"batch_size": 64})
    assert response.status_code == 422, response.text
    assert "MiB of float64 activations" in response.json()["detail"][0]["message"]


def test_a_small_check_still_runs(client):
    response = client.post("/v1/gradcheck", json=_wide_cnn(4, 1), params={"batch_size": 4})
    assert response.status_code == 200, response.text
