"""Every spec in examples/ is named after its file, validates over HTTP without a warning and
trains, in-process, to the result the docs quote for it: at least its bound here, and exactly
the figure the README's table prints for it. A new example must be added here."""

from __future__ import annotations

import json
import re
import time

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
# A row of the README's table of results: | [name](examples/name.json) | 94.7% accuracy |
README_ROW = re.compile(r"^\| \[(?P<name>[\w-]+)\]\(examples/(?P=name)\.json\) \| "
                        r"(?:(?P<percent>\d+(?:\.\d+)?)% accuracy|RMSE (?P<rmse>\d+\.\d+))",
                        re.MULTILINE)


def readme_claims() -> dict[str, tuple[str, str]]:
    """example -> (test metric, its value as the README prints it)."""
    claims = {}
    for row in README_ROW.finditer((ROOT / "README.md").read_text()):
        metric = "test_accuracy" if row["percent"] else "test_rmse"
        claims[row["name"]] = (metric, row["percent"] or row["rmse"])
    return claims


def as_printed(value: float, printed: str, percent: bool) -> str:
    """`value` with as many decimals as `printed` has."""
    decimals = len(printed.partition(".")[2])
    return f"{value * 100 if percent else value:.{decimals}f}"


def test_every_example_is_listed() -> None:
    assert sorted(RESULTS) == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_example_is_named_after_its_file(name: str) -> None:
    """A job's name is what lists, downloads and exports show: the file it came from."""
    assert json.loads((ROOT / "examples" / f"{name}.json").read_text())["name"] == name


def test_the_readme_table_quotes_examples_that_exist() -> None:
    claims = readme_claims()
    assert {"digits-mlp", "digits-cnn", "spirals-mlp", "sine-regression"} <= set(claims)
    assert set(claims) <= set(EXAMPLES)
    assert all(RESULTS[name][0] == metric for name, (metric, _) in claims.items()), claims


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
    if name in (claims := readme_claims()):
        printed = claims[name][1]
        measured = as_printed(final[metric], printed, percent=metric.endswith("accuracy"))
        assert measured == printed, f"README.md says {printed} for {name}; it measures {measured}"


SWEEPS = sorted(path.stem for path in (ROOT / "examples" / "sweeps").glob("*.json"))


def test_the_sweep_examples_cover_the_documented_studies() -> None:
    """docs/sweeps.md's three: a learning-rate search, optimizers compared over seeds, and one
    network over seeds only."""
    assert {"lr-digits", "optimizers-repeats", "cnn-seeds"} <= set(SWEEPS)


@pytest.mark.parametrize("name", SWEEPS)
def test_the_sweep_example_is_accepted_by_the_api(name: str, client) -> None:
    """POST /v1/sweeps takes it as it is (every trial spec it can produce checked), plans the
    trials its method says; then it is cancelled and deleted, so that nothing trains."""
    body = json.loads((ROOT / "examples" / "sweeps" / f"{name}.json").read_text())
    created = client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    sweep = created.json()
    assert sweep["name"] == body["name"] and sweep["repeats"] == body.get("repeats", 1)
    expected = body["budget"]["trials"] if "budget" in body else None
    assert expected is None or sweep["trials_planned"] == expected
    client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    deadline = time.monotonic() + 30
    while (deleted := client.delete(f"/v1/sweeps/{sweep['id']}")).status_code == 409:
        assert time.monotonic() < deadline, deleted.text  # a trial a worker took is ending
        time.sleep(0.2)
    assert deleted.status_code == 204, deleted.text
