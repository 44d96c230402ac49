"""inference/bundle.py: a bundle fed raw inputs gives what the trained network gives on inputs
normalised as the worker normalises them (worker/data.py normalize_inputs), computed here the
second way, by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core import datasets
from core.jobspec import JobSpec
from inference.bundle import load_bundle
from models.build import build_model
from worker.data import normalization_stats, normalize_inputs


def _trained_payload(normalize: str) -> tuple[dict, np.ndarray]:
    """A digits MLP trained for 30 full-batch steps, as a checkpoint's dict, and the raw test
    inputs."""
    spec = JobSpec.model_validate({
        "name": "bundle", "dataset": {"name": "digits", "normalize": normalize},
        "model": {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 32},
                             {"type": "relu"}, {"type": "dropout", "p": 0.2},
                             {"type": "linear", "out_features": 10}]},
    })
    arrays = datasets.load("digits")
    stats = normalization_stats(arrays.x_train, normalize)
    torch.manual_seed(0)
    model, _ = build_model(spec.model, (1, 8, 8), shape_device="cpu")
    x = normalize_inputs(torch.from_numpy(arrays.x_train), stats)
    y = torch.from_numpy(arrays.y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    payload = {"model": model.state_dict(), "spec": spec.model_dump(mode="json"),
               "normalization": stats, "step": 30, "metrics": {"val_loss": 0.5}}
    return payload, arrays.x_test


@pytest.mark.parametrize("normalize", ["standardize", "minmax", "none"])
def test_bundle_matches_model_on_normalised_inputs(normalize: str) -> None:
    payload, x_test = _trained_payload(normalize)
    bundle = load_bundle(payload, datasets.describe("digits"))
    assert bundle.input_shape == (1, 8, 8) and bundle.task == "classification"
    assert bundle.class_names == [str(i) for i in range(10)]
    assert bundle.step == 30 and bundle.metrics == {"val_loss": 0.5}
    assert bundle.preprocessing["kind"] == normalize
    assert not bundle.module.training  # dropout off

    reference, _ = build_model(JobSpec.model_validate(payload["spec"]).model, (1, 8, 8),
                               shape_device="cpu")
    reference.load_state_dict(payload["model"])
    reference.eval()
    raw = torch.from_numpy(x_test)
    with torch.no_grad():
        expected = reference(normalize_inputs(raw, payload["normalization"]))
    got = bundle(raw)
    assert torch.equal(got, expected)  # the same operations: bit for bit
    accuracy = (got.argmax(1).numpy() == datasets.load("digits").y_test).mean()
    assert accuracy > 0.8


def test_bundle_keeps_the_callers_random_draw() -> None:
    payload, _ = _trained_payload("standardize")
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    load_bundle(payload, datasets.describe("digits"), metrics={"val_accuracy": 0.9})
    assert torch.equal(torch.rand(3), expected)
