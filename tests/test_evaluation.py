"""The test split's evaluation through the service (real API, PostgreSQL and worker): a digits
job's 10x10 confusion matrix counts every test sample and agrees with its test accuracy; a
sine job has (true, predicted) pairs; a csv upload's feature and class names come back from
GET /v1/datasets/{id}, reach the job trained on it, and label the matrix the job page draws
in Chromium. (Browser and page fixtures: tests/test_dashboard.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from core import datasets
from tests.conftest import load_example, wait_for_state
from tests.test_dashboard import (  # noqa: F401 - browser and page are fixtures
    FINAL,
    browser,
    expect,
    page,
    screenshot,
)

KINDS = ["ant", "bee", "cat"]


@pytest.fixture(scope="module")
def http(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


def _run(http: httpx.Client, spec: dict) -> dict:
    response = http.post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    done = wait_for_state(http, response.json()["id"], FINAL, timeout=120)
    assert done["state"] == "succeeded", done["error"]
    return done


@pytest.fixture(scope="module")
def csv_dataset(http: httpx.Client) -> dict:
    """Three kinds of animal told apart, not always, by two measurements (feature columns on
    either side of the target, so that the names must skip it)."""
    rng = np.random.default_rng(0)
    rows = ["height,kind,weight"]
    for i in range(300):
        k = i % 3
        rows.append(f"{k + rng.normal(0, 0.5):.3f},{KINDS[k]},{k + rng.normal(0, 0.5):.3f}")
    response = http.post("/v1/datasets", data={"name": f"animals-{uuid.uuid4().hex[:8]}",
                                               "target": "kind"},
                         files={"file": ("animals.csv", "\n".join(rows).encode())})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def csv_job(http: httpx.Client, csv_dataset: dict, worker) -> dict:
    return _run(http, {
        "name": "evaluation-csv", "dataset": {"id": csv_dataset["id"]},
        "model": {"layers": [{"type": "linear", "out_features": 16}, {"type": "relu"},
                             {"type": "linear", "out_features": 3}]},
        "optimizer": {"type": "adam", "lr": 0.03}, "training": {"epochs": 3, "batch_size": 32},
    })


def test_a_csv_uploads_names_come_back_from_the_dataset(http, csv_dataset):
    assert csv_dataset["feature_names"] == ["height", "weight"]
    assert csv_dataset["class_names"] == KINDS
    again = http.get(f"/v1/datasets/{csv_dataset['id']}").json()
    assert (again["feature_names"], again["class_names"]) == (["height", "weight"], KINDS)
    listed = {d.get("id"): d for d in http.get("/v1/datasets").json()}
    assert listed[csv_dataset["id"]]["feature_names"] == ["height", "weight"]
    digits = http.get("/v1/datasets/digits").json()
    assert digits["class_names"] == [str(c) for c in range(10)]


def test_an_npz_whose_names_do_not_match_is_a_422_naming_the_field(http):
    import io

    buffer = io.BytesIO()
    np.savez(buffer, x_train=np.zeros((20, 3), np.float32), y_train=np.arange(20) % 2,
             feature_names=np.array(["a", "b"]))
    response = http.post("/v1/datasets", data={"name": f"bad-{uuid.uuid4().hex[:8]}"},
                         files={"file": ("bad.npz", buffer.getvalue())})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == "file: feature_names"


def test_a_digits_jobs_matrix_counts_the_test_split_and_matches_its_accuracy(http, worker):
    spec = load_example("digits-mlp") | {"name": "evaluation-digits"}
    # A few training rows for speed; the test split stays whole.
    spec["dataset"] = spec["dataset"] | {"n_train": 400}
    spec["training"] = spec["training"] | {"epochs": 2}
    done = _run(http, spec)
    evaluation = done["evaluation"]
    n_test = len(datasets.load("digits").y_test)
    matrix = np.array(evaluation["matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == n_test == evaluation["samples"]
    assert evaluation["class_names"] == [str(c) for c in range(10)]
    accuracy = done["summary"]["test"]["test_accuracy"]
    assert np.trace(matrix) / n_test == pytest.approx(accuracy, abs=1e-9)
    rows = evaluation["per_class"]
    assert [row["support"] for row in rows] == matrix.sum(axis=1).tolist()
    assert [row["support"] for row in rows] == np.bincount(datasets.load("digits").y_test
                                                           ).tolist()
    # Recall weighted by support is accuracy again.
    assert sum(row["recall"] * row["support"] for row in rows) / n_test == pytest.approx(
        accuracy, abs=1e-5)
    for c, row in enumerate(rows):
        if matrix[:, c].sum():
            assert row["precision"] == pytest.approx(matrix[c, c] / matrix[:, c].sum(), abs=1e-6)
    listed = http.get("/v1/jobs", params={"limit": 20}).json()["items"]
    assert [job for job in listed if job["id"] == done["id"]]
    assert all("evaluation" not in job for job in listed)  # lists stay small


@pytest.fixture(scope="module")
def sine_job(http: httpx.Client, worker) -> dict:
    spec = load_example("sine-regression") | {"name": "evaluation-sine"}
    spec["dataset"] = {"name": "sine"}
    spec["training"] = spec["training"] | {"epochs": 3}
    return _run(http, spec)


def test_a_sine_jobs_evaluation_has_true_and_predicted_pairs(sine_job):
    done = sine_job
    evaluation = done["evaluation"]
    assert evaluation["task"] == "regression"
    output = evaluation["outputs"][0]
    n_test = len(datasets.load("sine").y_test)
    assert len(output["true"]) == len(output["predicted"]) == n_test == evaluation["samples"]
    np.testing.assert_allclose(sorted(output["true"]),
                               np.sort(datasets.load("sine").y_test[:, 0]), rtol=1e-5)
    assert output["residual"]["rmse"] == pytest.approx(done["summary"]["test"]["test_rmse"],
                                                       rel=1e-4)


def test_the_job_page_draws_the_matrix_with_the_class_names(
    page, http, csv_job,  # noqa: F811 - page is the fixture imported above
):
    evaluation = csv_job["evaluation"]
    assert evaluation["class_names"] == KINDS
    page.goto(f"/jobs/{csv_job['id']}")
    page.wait_for_function("() => window.traindock.settled === true")
    expect(page.locator("#evaluation")).to_be_visible()
    expect(page.locator("#confusion th[scope=col]")).to_have_text(KINDS)
    expect(page.locator("#confusion th[scope=row]")).to_have_text(KINDS)
    counts = page.locator("#confusion td").evaluate_all(
        "cells => cells.map((cell) => Number(cell.dataset.count))")
    assert counts == [n for row in evaluation["matrix"] for n in row]
    names = page.locator("#per-class tr[data-name] td:first-child").all_inner_texts()
    assert names == KINDS
    recall = page.locator("#per-class tr[data-name=bee] td").nth(2)
    expect(recall).to_have_text(f"{evaluation['per_class'][1]['recall']:.3f}")
    screenshot(page, "evaluation")


def test_a_regression_jobs_page_plots_predicted_against_true(
    page, sine_job,  # noqa: F811 - page is the fixture imported above
):
    output = sine_job["evaluation"]["outputs"][0]
    page.goto(f"/jobs/{sine_job['id']}")
    page.wait_for_function("() => window.traindock.settled === true")
    chart = page.locator("#evaluation .scatter")
    expect(chart).to_have_attribute("data-points", str(len(output["true"])))
    page.wait_for_function("() => document.querySelector('#evaluation .scatter').plot")
    labels = page.evaluate("() => document.querySelector('#evaluation .scatter').plot.series"
                           ".map((s) => s.label)")
    assert labels[1:] == ["predicted", "y = x"]
    rmse = page.evaluate("(value) => value.toPrecision(3)", output["residual"]["rmse"])
    expect(page.locator("#evaluation")).to_contain_text(f"RMSE {rmse}")
    screenshot(page, "evaluation-regression")
