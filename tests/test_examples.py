"""Every spec in examples/ validates over HTTP without a warning and trains, in-process, to
the result the docs quote for it. A new example must be added here."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT
from tests.test_train_loop import run_job

# example -> (test metric, the least it must reach; rmse: the most)
RESULTS = {
    "digits-cnn-augmented": ("test_accuracy", 0.96),
    "digits-cnn": ("test_accuracy", 0.95),
    "digits-maxout": ("test_accuracy", 0.94),
    "digits-mlp": ("test_accuracy", 0.93),
    "moons-bce": ("test_accuracy", 0.98),
    "sine-regression": ("test_rmse", 0.08),
    "spirals-mlp": ("test_accuracy", 0.98),
    "spirals-residual": ("test_accuracy", 0.98),
    "zones-multilabel": ("test_accuracy", 0.93),
}
EXAMPLES = sorted(path.stem for path in (ROOT / "examples").glob("*.json"))


def test_every_example_is_listed() -> None:
    assert sorted(RESULTS) == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_example_validates_without_warnings(name: str, client) -> None:
    spec = json.loads((ROOT / "examples" / f"{name}.json").read_text())
    response = client.post("/v1/jobs/validate", json=spec)
    assert response.status_code == 200, response.text
    assert response.json()["warnings"] == []


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_example_trains_to_its_result(name: str) -> None:
    metric, bound = RESULTS[name]
    final = run_job(json.loads((ROOT / "examples" / f"{name}.json").read_text())).final
    if metric.endswith("rmse"):
        assert final[metric] <= bound, final
    else:
        assert final[metric] >= bound, final
