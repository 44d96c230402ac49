"""Sweeps without a server: spec paths, the grid's order, Optuna asked from a rebuilt history
(the same history, the same answer), repeats' mean and standard deviation, and the examples
in examples/sweeps/ passing the same check POST /v1/sweeps makes."""

from __future__ import annotations

import json
import statistics

import pytest

from core.settings import Settings
from core.sweeps import space
from core.sweeps.check import check_sweep
from core.sweeps.paths import PathError, get_path, set_path
from core.sweeps.results import Trial, TrialJob, best_trial
from core.sweeps.spec import SweepSpec
from core.sweeps.study import importances, next_params
from core.sweeps.trial_spec import trial_document
from tests.conftest import ROOT, load_example

SETTINGS = Settings(database_url="postgresql://nobody@127.0.0.1/none")


def sweep(**fields) -> SweepSpec:
    return SweepSpec.model_validate({"base": load_example("digits-mlp"), **fields})


def test_paths_reach_fields_list_items_and_whole_objects():
    document = load_example("digits-mlp")
    assert get_path(document, "model.layers[3].p") == 0.2
    changed = set_path(document, "model.layers[3].p", 0.5)
    assert changed["model"]["layers"][3]["p"] == 0.5 and document["model"]["layers"][3]["p"] == 0.2
    assert set_path(document, "optimizer", {"type": "sgd"})["optimizer"] == {"type": "sgd"}
    for bad, words in [("model.layers[9].p", "has 5 items"), ("optimizer.lrr", "no field 'lrr'"),
                       ("model..x", "not a spec path"), ("model.layers[0].p", "no field 'p'")]:
        with pytest.raises(PathError, match=words.replace("[", r"\[")):
            set_path(document, bad, 1)


def test_a_whole_object_is_set_before_the_fields_inside_it_and_repeats_add_to_the_seed():
    base = load_example("digits-mlp")
    document = trial_document(base, {"optimizer.lr": 0.5, "optimizer": {"type": "sgd",
                                                                         "lr": 0.1}}, 2, "t")
    assert document["optimizer"] == {"type": "sgd", "lr": 0.5}
    assert document["training"]["seed"] == base["training"]["seed"] + 2
    assert base["training"]["seed"] == 0  # the base is not changed


def test_the_grid_is_every_combination_in_a_fixed_order():
    spec = sweep(method="grid", parameters={
        "optimizer.lr": {"values": [0.1, 0.01]},
        "training.batch_size": {"low": 16, "high": 48, "type": "int", "step": 16},
        "model.layers[3].p": {"low": 0.0, "high": 0.5, "step": 0.25}})
    points = [space.grid_point(spec, n) for n in range(space.grid_size(spec))]
    assert len(points) == 2 * 3 * 3
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 18
    assert points[0] == {"optimizer.lr": 0.1, "training.batch_size": 16, "model.layers[3].p": 0.0}
    assert points[-1] == {"optimizer.lr": 0.01, "training.batch_size": 48,
                          "model.layers[3].p": 0.5}


def _done(number: int, params: dict, values: list[float]) -> Trial:
    trial = Trial(number, params)
    trial.jobs = [TrialJob(f"j{number}-{i}", i, "succeeded", v, i, 1.0)
                  for i, v in enumerate(values)]
    return trial


def test_tpe_asks_the_same_next_configuration_from_the_same_history_and_never_repeats_a_choice():
    spec = sweep(method="tpe", budget={"trials": 30}, parameters={
        "optimizer.lr": {"low": 1e-4, "high": 0.1, "log": True},
        "optimizer": {"choices": [{"type": "sgd", "lr": 0.1}, {"type": "adam"}]}})
    trials = []
    for n in range(12):
        params = next_params(spec, trials, n)
        assert params == next_params(spec, trials, n)  # a restarted driver asks the same
        assert params["optimizer"] in spec.parameters["optimizer"].choices
        assert 1e-4 <= params["optimizer.lr"] <= 0.1
        trials.append(_done(n, params, [params["optimizer.lr"] * 10]))
    found = importances(spec, trials)
    assert found is not None and set(found) == {"optimizer.lr", "optimizer"}
    assert found["optimizer.lr"] > found["optimizer"]  # the value is lr alone
    assert sum(found.values()) == pytest.approx(1.0)


def test_repeats_aggregate_as_mean_and_sample_std_and_the_best_follows_the_mode():
    a, b = _done(0, {"x": 1}, [0.5, 0.7, 0.6]), _done(1, {"x": 2}, [0.4, 0.9])
    assert a.value == pytest.approx(0.6) and a.std == pytest.approx(statistics.stdev([.5, .7, .6]))
    assert best_trial([a, b], "min") is a and best_trial([a, b], "max") is b
    running = _done(2, {"x": 3}, [0.1])
    running.jobs.append(TrialJob("j2-1", 1, "running", None, 1, None))
    assert running.value is None and running.state == "running"  # not until every seed ended
    assert best_trial([a, running], "min") is a


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "examples" / "sweeps")
                                          .glob("*.json")))
def test_the_examples_pass_the_check(name):
    spec = SweepSpec.model_validate_json((ROOT / "examples" / "sweeps" / f"{name}.json")
                                         .read_text())
    checked = check_sweep(spec, SETTINGS)
    expected = space.grid_size(spec) if spec.method == "grid" else spec.budget.trials
    assert checked.trials == expected
