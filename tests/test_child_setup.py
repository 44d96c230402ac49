"""How the training child sets itself up: its torch threads, and shapes inferred on the CPU
giving the network a meta-device pass gives, weight for weight."""

from __future__ import annotations

import os

import pytest
import torch

from core.jobspec import JobSpec, validate_job
from core.settings import Settings
from models.build import build_model
from tests.conftest import load_example
from worker.child import training_threads, tune_backends


def test_threads_come_from_the_setting_then_omp_num_threads_then_the_cores_but_one(
        monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert training_threads(5) == 5
    assert training_threads(0) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert training_threads(0) == max(1, len(os.sched_getaffinity(0)) - 1)


@pytest.mark.parametrize("example", ["digits-mlp", "digits-cnn", "digits-maxout",
                                     "spirals-residual"])
def test_shapes_on_the_cpu_build_the_same_network_as_on_the_meta_device(example):
    checked = validate_job(JobSpec.model_validate(load_example(example)), Settings())
    spec, shape = checked.spec, tuple(checked.dataset.input_shape)
    built = {}
    for device in ("meta", "cpu"):
        torch.manual_seed(7)
        built[device] = build_model(spec.model, shape, shape_device=device)
    (meta_net, meta_summary), (cpu_net, cpu_summary) = built["meta"], built["cpu"]
    assert cpu_summary == meta_summary
    meta_state, cpu_state = meta_net.state_dict(), cpu_net.state_dict()
    assert meta_state.keys() == cpu_state.keys()
    for name in meta_state:
        assert torch.equal(meta_state[name], cpu_state[name]), name
    # Neither pass moved the RNG: what is drawn next is the same.
    torch.manual_seed(7)
    build_model(spec.model, shape, shape_device="cpu")
    after_cpu = torch.rand(3)
    torch.manual_seed(7)
    build_model(spec.model, shape, shape_device="meta")
    assert torch.equal(after_cpu, torch.rand(3))


def test_cudnn_times_its_algorithms_on_a_gpu_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    tune_backends(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    tune_backends(torch.device("cuda"))  # a device object: no GPU is touched
    assert torch.backends.cudnn.benchmark is True
