"""core/compare_labels.py on plain specs: layers are matched by type and rank, not list index;
different architectures are labelled by name with a one-line architecture; the leader of each
metric respects its direction (the lowest loss, the highest accuracy)."""

from __future__ import annotations

import copy

from core.compare_labels import ComparedJob, architecture, compare
from tests.conftest import load_example


def job(job_id: str, name: str = "digits-mlp", summary: dict | None = None,
        **changes) -> ComparedJob:
    spec = copy.deepcopy(load_example("digits-mlp"))
    spec["name"] = name
    for section, values in changes.items():
        if section == "layers":
            spec["model"]["layers"] = values
        else:
            spec[section].update(values)
    return ComparedJob(job_id.ljust(36, "0"), name, spec, summary)


LAYERS = load_example("digits-mlp")["model"]["layers"]


def test_a_learning_rate_difference_is_the_label():
    found = compare([job("a", optimizer={"lr": 0.01}), job("b", optimizer={"lr": 0.001})])
    assert not found.architectures_differ
    assert found.fields == ["optimizer.lr"]
    assert found.labels == ["optimizer.lr=0.01", "optimizer.lr=0.001"]


def test_layers_are_named_by_type_and_rank_not_index():
    wider = copy.deepcopy(LAYERS)
    wider[1]["out_features"] = 256
    wider[3]["p"] = 0.5
    found = compare([job("a"), job("b", layers=wider)])
    assert found.fields == ["linear#1 out", "dropout p"]
    assert found.labels == ["linear#1 out=128, dropout p=0.2", "linear#1 out=256, dropout p=0.5"]


def test_an_inserted_layer_labels_by_name_and_says_the_architecture_in_a_line():
    extra = LAYERS[:3] + [{"type": "linear", "out_features": 64}, {"type": "relu"}] + LAYERS[3:]
    jobs = [job(k, optimizer={"lr": lr}) for k, lr in (("a", 0.1), ("b", 0.01), ("c", 0.001))]
    jobs += [job("d", layers=extra), job("e", name="other")]
    found = compare(jobs)
    assert found.architectures_differ
    assert found.labels[-1] == "other"
    assert found.labels[0] == f"digits-mlp [{'a'.ljust(8, '0')}]"  # the name repeats
    assert len(set(found.labels)) == 5
    assert not any(field.startswith(("linear", "model.layers")) for field in found.fields)
    assert found.fields == ["optimizer.lr"]
    assert found.architectures[3] == ("flatten → linear 128 → relu → linear 64 → relu → "
                                      "dropout 0.2 → linear 10")
    assert architecture({"model": {"layers": [{"type": "relu"}] * 3}}) == "relu ×3"


def test_the_best_leader_is_the_lowest_loss_and_the_highest_accuracy():
    fast = {"best": {"val_loss": {"value": 0.2}, "val_accuracy": {"value": 0.90}},
            "latest": {"val_loss": 0.9, "val_accuracy": 0.80, "lr": 0.01}, "test": {}}
    slow = {"best": {"val_loss": {"value": 0.3}, "val_accuracy": {"value": 0.95}},
            "latest": {"val_loss": 0.3, "val_accuracy": 0.95}, "test": {"test_accuracy": 0.9}}
    a, b = job("a", summary=fast), job("b", summary=slow)
    found = compare([a, b])
    assert found.leaders["best"] == {"val_loss": [a.id], "val_accuracy": [b.id]}
    assert found.leaders["final"] == {"val_loss": [b.id], "val_accuracy": [b.id]}
    assert found.metrics["final"] == ["val_accuracy", "val_loss"]  # lr has no better
    assert found.metrics["test"] == ["test_accuracy"] and found.leaders["test"] == {}
    assert found.directions == {"val_accuracy": "max", "val_loss": "min",
                                "test_accuracy": "max"}


def test_the_same_spec_twice_is_told_apart_by_the_short_id():
    found = compare([job("a"), job("b")])
    assert found.fields == [] and not found.architectures_differ
    assert found.labels == ["digits-mlp [a0000000]", "digits-mlp [b0000000]"]
