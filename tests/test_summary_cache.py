"""The API remembers the layers it has measured on the meta device (models/build.py
_measure_layer): a spec made of layers seen before is summarised without a shape pass, and
its summary is the one a fresh pass gives."""

from __future__ import annotations

import json

import pytest

from models import build
from models.build import SpecError, summarize
from models.spec import ModelSpec


def _spec(**first) -> ModelSpec:
    return ModelSpec.model_validate({"layers": [
        {"type": "flatten"}, {"type": "linear", "out_features": 32, **first}, {"type": "relu"},
        {"type": "batchnorm"}, {"type": "linear", "out_features": 10}]})


@pytest.fixture
def empty_cache(monkeypatch):
    monkeypatch.setattr(build, "_MEASURED", type(build._MEASURED)())
    return build._MEASURED


def test_a_remembered_layer_gives_the_summary_a_fresh_pass_gives(empty_cache) -> None:
    fresh = summarize(_spec(), (1, 8, 8))
    assert len(empty_cache) == 5
    assert summarize(_spec(), (1, 8, 8)) == fresh
    assert len(empty_cache) == 5  # nothing measured again
    # The same layers on another input shape are other entries.
    assert summarize(_spec(), (1, 4, 4)).layers[1].params == 16 * 32 + 32
    assert len(empty_cache) == 7  # flatten and the first linear see a new shape


def test_name_and_frozen_are_this_specs_own(empty_cache) -> None:
    summarize(_spec(), (64,))
    named = summarize(_spec(name="hidden", frozen=True), (64,))
    assert named.layers[1].name == "hidden"
    assert named.layers[1].trainable_params == 0
    assert named.layers[1].non_trainable_params == 64 * 32 + 32
    assert summarize(_spec(), (64,)).layers[1].trainable_params == 64 * 32 + 32


def test_a_layer_that_does_not_fit_is_refused_every_time(empty_cache) -> None:
    spec = ModelSpec.model_validate({"layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 5}, {"type": "flatten"},
        {"type": "linear", "out_features": 2}]})
    for _ in range(2):
        with pytest.raises(SpecError, match="smaller than the kernel"):
            summarize(spec, (1, 3, 3))
    assert len(empty_cache) == 0


def test_the_cache_keeps_its_newest_entries(empty_cache, monkeypatch) -> None:
    monkeypatch.setattr(build, "_MEASURED_MAX", 3)
    for width in (4, 5, 6, 7):
        summarize(ModelSpec.model_validate(
            {"layers": [{"type": "linear", "out_features": width}]}), (2,))
    kept = [json.loads(settings)["out_features"] for settings, _ in empty_cache]
    assert kept == [5, 6, 7]
