"""Training memory is bounded by the spec: a network whose activations cannot fit in the
training process's memory is refused before it is queued, evaluation batches are cut to fit,
and the training process has a memory limit by default."""

from __future__ import annotations

import psutil
import pytest

from core.jobspec import JobSpec, validate_job
from core.memory_estimate import EVAL_BATCH_MAX, EVAL_FLOOR_BYTES, estimate
from core.settings import Settings
from models.build import SpecError, summarize
from models.spec import ModelSpec


def _padded_conv(padding: int, channels: int = 8) -> dict:
    return {"layers": [{"type": "conv2d", "out_channels": channels, "kernel_size": 3,
                        "padding": padding},
                       {"type": "relu"}, {"type": "global_avg_pool"},
                       {"type": "linear", "out_features": 10}]}


def _spec(model: dict, batch_size: int) -> JobSpec:
    return JobSpec.model_validate({"name": "padded", "dataset": {"name": "digits"},
                                   "model": model,
                                   "training": {"epochs": 1, "batch_size": batch_size}})


def test_a_spec_whose_activations_cannot_fit_is_refused_naming_the_batch_and_the_layer():
    settings = Settings(max_child_memory_mb=2048)
    with pytest.raises(SpecError) as caught:
        validate_job(_spec(_padded_conv(1024), 16), settings)
    error = caught.value
    assert error.field == "training.batch_size"
    assert "2,048 MB (TRAINDOCK_MAX_CHILD_MEMORY_MB)" in error.message
    assert "(conv2d)" in error.message and "lower training.batch_size to at most" in error.message
    # The batch it names fits, one more does not.
    fits = int(error.message.split("at most ")[1].split(",")[0])
    validate_job(_spec(_padded_conv(1024), fits), settings)
    with pytest.raises(SpecError):
        validate_job(_spec(_padded_conv(1024), fits + 1), settings)


def test_the_same_spec_validates_where_there_is_room_and_with_the_limit_off():
    validate_job(_spec(_padded_conv(64), 16), Settings(max_child_memory_mb=2048))
    validate_job(_spec(_padded_conv(1024), 16), Settings(max_child_memory_mb=0))


def test_the_api_refuses_it_with_a_422(client):
    spec = _spec(_padded_conv(1024, channels=64), 64).model_dump(mode="json")
    response = client.post("/v1/jobs/validate", json=spec)
    assert response.status_code == 422, response.text
    fields = [e["field"] for e in response.json()["detail"]]
    assert fields == ["training.batch_size"]


def test_evaluation_batches_are_cut_to_the_training_batch_s_memory():
    summary = summarize(ModelSpec.model_validate(_padded_conv(64)), (1, 8, 8))
    need = estimate(summary, 16)
    assert need.eval_batch < EVAL_BATCH_MAX
    assert need.eval_bytes <= max(need.train_bytes, EVAL_FLOOR_BYTES)
    # A small network keeps the full evaluation batch (and its results, bit for bit).
    small = summarize(ModelSpec.model_validate(
        {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 32},
                    {"type": "relu"}, {"type": "linear", "out_features": 10}]}), (1, 8, 8))
    assert estimate(small, 64).eval_batch == EVAL_BATCH_MAX


def test_the_training_process_has_a_memory_limit_by_default(monkeypatch):
    monkeypatch.delenv("TRAINDOCK_MAX_CHILD_MEMORY_MB", raising=False)
    total_mb = psutil.virtual_memory().total / 2**20
    assert Settings().child_memory_limit_mb == int(total_mb * 0.75)
    monkeypatch.setenv("TRAINDOCK_MAX_CHILD_MEMORY_MB", "0")
    assert Settings().child_memory_limit_mb == 0  # off, when asked
