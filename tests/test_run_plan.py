"""One plan of a run (core/run_plan.py) for the API and the loop: the steps a job is said to
take when it is submitted are the steps the training loop takes, also when the last batch of
an epoch holds a single sample and the loop merges it into the one before.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from core.jobspec import JobSpec, validate_job
from core.run_plan import batch_bounds, batch_count, plan_run
from core.settings import Settings
from core.specs.training import TrainingSpec
from models.build import build_model
from models.losses import build_loss
from worker.data import prepare_data
from worker.optim import build_optimizer
from worker.state import LoopState, Point
from worker.train import train

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parent.parent
N_SAMPLES = 1512  # spirals: 1,089 training samples with val_fraction 0.1, and 1,089 % 64 == 1


def spirals(**training: Any) -> dict:
    return {
        "dataset": {"name": "spirals", "n_samples": N_SAMPLES, "val_fraction": 0.1},
        "model": {"layers": [{"type": "linear", "out_features": 8}, {"type": "relu"},
                             {"type": "linear", "out_features": 3}]},
        "optimizer": {"type": "sgd", "lr": 0.05},
        "training": {"epochs": 2, "batch_size": 64, "seed": 0, **training},
    }


class StepCounter:
    """Counts the optimizer steps the loop takes, from its own state at the end."""

    steps: int | None = None

    def on_points(self, state: LoopState, points: list[Point]) -> None:
        pass

    def on_epoch_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        pass

    def on_train_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        self.steps = state.step

    def on_preempt(self, state: LoopState) -> None:
        pass


def steps_the_loop_takes(job: dict) -> tuple[int, int]:
    """(training samples, optimizer steps) of the job trained on the CPU."""
    spec = JobSpec.model_validate(job)
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, CPU)
    model, _ = build_model(spec.model, data.input_shape)
    counter = StepCounter()
    train(spec, model, build_optimizer(spec, model), build_loss(spec.loss), data, [counter])
    return len(data.x_train), counter.steps


def test_batch_count_is_the_number_of_batch_bounds() -> None:
    for n in range(1, 300):
        for size in (1, 2, 3, 7, 16, 64, 83):
            bounds = batch_bounds(n, size)
            assert batch_count(n, size) == len(bounds), (n, size)
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False)), (n, size)
            last = bounds[-1][1] - bounds[-1][0]
            assert last >= 2 or n == 1, (n, size)  # never a last batch of one sample


def test_the_plan_counts_merged_batches_accumulation_and_max_steps() -> None:
    plan = plan_run(1089, TrainingSpec(epochs=3, batch_size=64))
    assert (plan.batches, plan.steps_per_epoch, plan.total_steps) == (17, 17, 51)
    assert plan.bounds[-1] == (1024, 1089)  # 65 samples: the single one merged in
    plan = plan_run(1089, TrainingSpec(epochs=3, batch_size=64, accumulate_batches=4))
    assert (plan.steps_per_epoch, plan.full_steps, plan.total_steps) == (5, 15, 15)
    plan = plan_run(1089, TrainingSpec(epochs=3, batch_size=64, max_steps=20))
    assert (plan.full_steps, plan.total_steps, plan.epochs) == (51, 20, 2)


@pytest.mark.parametrize("training", [{}, {"accumulate_batches": 3}, {"max_steps": 30}])
def test_the_steps_estimated_at_submit_are_the_steps_the_loop_takes(
        settings: Settings, training: dict) -> None:
    job = spirals(**training)
    checked = validate_job(JobSpec.model_validate(job), settings)
    n_train, steps = steps_the_loop_takes(job)
    assert (n_train, n_train % 64) == (checked.n_train, 1)
    assert checked.estimated_steps == steps


def test_a_submitted_job_reports_the_steps_the_loop_takes(client: httpx.Client) -> None:
    job = spirals()
    response = client.post("/v1/jobs", json=job)
    assert response.status_code == 201, response.text
    created = response.json()
    try:
        _, steps = steps_the_loop_takes(job)
        assert created["progress"]["total_steps"] == steps == 2 * 17
    finally:
        client.post(f"/v1/jobs/{created['id']}/cancel")


def _imports(path: Path) -> set[str]:
    """The modules a file imports, TYPE_CHECKING blocks included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_plan_is_pure_python_and_the_checks_do_not_import_their_caller() -> None:
    plan = _imports(ROOT / "core" / "run_plan.py")
    assert not {n for n in plan if n.split(".")[0] in ("torch", "numpy", "models", "worker")}
    # core/jobspec.py runs the checks; they take its types from their own modules.
    for path in [ROOT / "core" / "checks.py", ROOT / "core" / "validated_job.py",
                 *sorted((ROOT / "core" / "specs").glob("*.py"))]:
        assert not {n for n in _imports(path) if n.startswith("core.jobspec")}, path
