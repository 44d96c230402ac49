"""The training loop, its data and its checkpoints, without a database or a broker.

The loop runs on the CPU with a toy network and an in-memory list as its only callback. The
main check is a direct reference: the same job written as a plain PyTorch loop must end with
the same weights and the same per-epoch metrics.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from core import datasets
from core.jobspec import JobSpec
from models.build import build_model
from models.losses import build_loss
from worker.checkpoints import checkpoint_state, load_checkpoint, write_atomically
from worker.data import TrainData, prepare_data
from worker.evaluate import count_correct
from worker.optim import build_optimizer
from worker.state import EpochProgress, LoopState, Point
from worker.train import TrainingDiverged, steps_per_epoch, train

CPU = torch.device("cpu")


@dataclass
class ListSink:
    """A callback that keeps everything in memory."""

    points: list[Point] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, float] | None = None
    state: LoopState | None = None

    def on_points(self, state: LoopState, points: list[Point]) -> None:
        self.points.extend(points)

    def on_epoch_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        self.epochs.append(dict(metrics))

    def on_train_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        self.final = dict(metrics)
        self.state = state

    def step_points(self) -> list[Point]:
        return [p for p in self.points if p.name == "train_loss_step"]


def spirals_job(**training: Any) -> dict:
    return {
        "dataset": {"name": "spirals", "val_fraction": 0.1},
        "model": {"layers": [
            {"type": "linear", "out_features": 16}, {"type": "relu"},
            {"type": "dropout", "p": 0.1},
            {"type": "linear", "out_features": 3},
        ]},
        "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
        "training": {"epochs": 2, "batch_size": 64, "seed": 0, **training},
    }


@dataclass
class Run:
    spec: JobSpec
    data: TrainData
    model: nn.Module
    optimizer: torch.optim.Optimizer
    sink: ListSink
    initial_state: dict[str, torch.Tensor]
    rng_at_start: torch.Tensor
    final: dict[str, float]


def run_job(job: dict) -> Run:
    """What worker/child.py does, minus the database: seed, data, model, train."""
    spec = JobSpec.model_validate(job)
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, CPU)
    model, _ = build_model(spec.model, data.input_shape)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(spec, model)
    sink = ListSink()
    rng = torch.get_rng_state()
    final = train(spec, model, optimizer, build_loss(spec.loss), data, [sink])
    return Run(spec, data, model, optimizer, sink, initial, rng, final)


def _without_timing(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k != "samples_per_s"}


# --- the loop against a plain PyTorch loop ---------------------------------------------------


def test_loop_matches_a_plain_pytorch_reference() -> None:
    run = run_job(spirals_job(log_every_steps=4))  # 17 steps per epoch: windows of 1 to 4
    spec, data = run.spec, run.data
    cfg = spec.training

    # The same network by hand, starting from the same weights.
    ref = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
    ref.load_state_dict({k.removeprefix("layers."): v for k, v in run.initial_state.items()})
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)

    n = len(data.x_train)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    torch.set_rng_state(run.rng_at_start)  # dropout draws its masks from the global generator
    batch_losses: list[tuple[float, int]] = []
    epoch_metrics = []
    for _ in range(cfg.epochs):
        ref.train()
        order = torch.randperm(n, generator=shuffle)
        total, correct = 0.0, 0
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            out = ref(data.x_train[idx])
            loss = F.cross_entropy(out, data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            batch_losses.append((loss.item(), len(idx)))
            total += loss.item() * len(idx)
            correct += (out.argmax(1) == data.y_train[idx]).sum().item()
        ref.eval()
        with torch.no_grad():
            val_out = ref(data.x_val)
        epoch_metrics.append({
            "train_loss": total / n,
            "train_accuracy": correct / n,
            "val_loss": F.cross_entropy(val_out, data.y_val).item(),
            "val_accuracy": (val_out.argmax(1) == data.y_val).float().mean().item(),
        })
    with torch.no_grad():
        test_out = ref(data.x_test)

    ours = {k.removeprefix("layers."): v for k, v in run.model.state_dict().items()}
    for key, value in ref.state_dict().items():
        assert_close(ours[key], value, msg=key)
    assert len(run.sink.epochs) == cfg.epochs
    for got, want in zip(run.sink.epochs, epoch_metrics, strict=True):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
        assert got["lr"] == 0.05
    assert run.final["test_loss"] == pytest.approx(
        F.cross_entropy(test_out, data.y_test).item(), rel=1e-5)
    assert run.final["test_accuracy"] == pytest.approx(
        (test_out.argmax(1) == data.y_test).float().mean().item())

    # Each train_loss_step point is the sample-weighted mean loss since the previous point.
    steps = run.sink.step_points()
    previous = 0
    for point in steps:
        window = batch_losses[previous:point.step]
        expected = sum(loss * size for loss, size in window) / sum(size for _, size in window)
        assert point.value == pytest.approx(expected, rel=1e-5), point
        previous = point.step
    assert previous == len(batch_losses) == run.sink.state.total_steps
    assert [p.step for p in steps] == [4, 8, 12, 16, 17, 20, 24, 28, 32, 34]


def test_epoch_progress_sums_its_batches_only_when_settled() -> None:
    progress = EpochProgress()
    progress.start(torch.arange(10))
    progress.add_batch(torch.tensor(2.0), 4, torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]))
    progress.add_batch(torch.tensor(0.5), 6, torch.tensor([1] * 6), torch.tensor([1] * 5 + [0]))
    assert progress.window_count == 10 and progress.loss_sum.item() == 0
    # A checkpoint loses none of the batches: they travel unsettled, and settle to the same
    # sums after a restore (fault D: folding them before saving rounded differently).
    saved = io.BytesIO()
    torch.save(progress.as_dict(), saved)
    saved.seek(0)
    restored = EpochProgress.from_dict(torch.load(saved, weights_only=True), torch.device("cpu"))
    restored.settle(lambda p, y: count_correct(p, y, "classification"))
    assert restored.loss_sum.item() == 2.0 * 4 + 0.5 * 6 and restored.correct.item() == 3 + 5
    progress.settle(lambda p, y: count_correct(p, y, "classification"))
    assert progress.loss_sum.item() == progress.window_loss.item() == 2.0 * 4 + 0.5 * 6
    assert progress.correct.item() == 3 + 5
    assert progress.as_dict()["loss_sum"].item() == 11.0
    progress.settle(lambda p, y: count_correct(p, y, "classification"))  # nothing new: no change
    assert progress.loss_sum.item() == 11.0 and progress.correct.item() == 8


def test_an_epoch_covers_every_sample_once_with_a_short_last_batch() -> None:
    # 1080 training samples in batches of 64: 17 steps, the last one with 56 samples.
    run = run_job(spirals_job(epochs=1))
    assert len(run.data.x_train) == 1080
    assert run.sink.state.step == run.sink.state.total_steps == 17
    assert steps_per_epoch(1080, 64) == 17 and steps_per_epoch(1024, 64) == 16


def test_batchnorm_survives_a_last_batch_of_one() -> None:
    job = spirals_job(epochs=1, batch_size=83)  # 1080 = 13 * 83 + 1
    job["model"]["layers"].insert(1, {"type": "batchnorm"})
    run = run_job(job)
    assert math.isfinite(run.final["train_loss"])


def test_same_seed_repeats_and_another_seed_differs() -> None:
    first, second = run_job(spirals_job()), run_job(spirals_job())
    other = run_job(spirals_job(seed=1))
    assert _without_timing(first.final) == _without_timing(second.final)
    assert [p.value for p in first.sink.points if p.name != "samples_per_s"] == [
        p.value for p in second.sink.points if p.name != "samples_per_s"]
    for key, value in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[key], value), key
    assert first.final["train_loss"] != other.final["train_loss"]
    assert not torch.equal(first.model.layers[0].weight, other.model.layers[0].weight)


def test_shuffling_follows_the_training_seed_alone() -> None:
    # Same initial weights, different seeds: only the batch order differs, and it matters.
    spec_a = JobSpec.model_validate(spirals_job(seed=0, epochs=1))
    spec_b = JobSpec.model_validate(spirals_job(seed=5, epochs=1))
    data = prepare_data(spec_a, CPU)
    losses = []
    for spec in (spec_a, spec_b):
        torch.manual_seed(0)
        model, _ = build_model(spec.model, data.input_shape)
        losses.append(train(spec, model, build_optimizer(spec, model), build_loss(spec.loss), data,
                            [])["train_loss"])
    assert losses[0] != losses[1]


# --- divergence -----------------------------------------------------------------------------


# A learning rate of 10 on a small regression: the loss is infinite within a few steps.
DIVERGING = {
    "dataset": {"name": "sine"},
    "model": {"layers": [{"type": "linear", "out_features": 16}, {"type": "tanh"},
                         {"type": "linear", "out_features": 1}]},
    "loss": {"type": "mse"},
    "optimizer": {"type": "sgd", "lr": 10.0, "momentum": 0.9},
    "training": {"epochs": 3, "batch_size": 64},
}


def test_diverging_run_raises_with_advice() -> None:
    job = DIVERGING
    with pytest.raises(TrainingDiverged) as caught:
        run_job(job)
    message = str(caught.value)
    assert message.startswith("diverged at step ")
    step = int(message.split("at step ")[1].split(":")[0])
    assert 1 <= step <= 3 * steps_per_epoch(720, 64)
    assert "lower the learning rate (optimizer.lr) from 10 to 1" in message


# --- per-step logging -----------------------------------------------------------------------


def _step_counts(run: Run) -> dict[int, list[int]]:
    by_epoch: dict[int, list[int]] = {}
    for point in run.sink.step_points():
        by_epoch.setdefault(point.epoch, []).append(point.step)
    return by_epoch


@pytest.mark.parametrize(
    "batch_size",
    [
        64,  # 17 steps per epoch: every step
        22,  # 50 steps per epoch: every step
        pytest.param(11),  # 99 steps per epoch
        pytest.param(8),  # 135 steps per epoch
    ],
)
def test_default_step_logging_is_about_fifty_points_per_epoch(batch_size: int) -> None:
    run = run_job(spirals_job(batch_size=batch_size))
    per_epoch = steps_per_epoch(len(run.data.x_train), batch_size)
    counts = _step_counts(run)
    assert sorted(counts) == [1, 2]
    for epoch, steps in counts.items():
        assert steps[-1] == epoch * per_epoch  # the epoch's last step always has a point
        assert len(steps) == len(set(steps))
        assert min(per_epoch, 10) <= len(steps) <= 51, (per_epoch, len(steps))


def test_log_every_steps_is_honoured() -> None:
    run = run_job(spirals_job(batch_size=64, log_every_steps=5))
    per_epoch = steps_per_epoch(len(run.data.x_train), 64)  # 17: not a multiple of 5
    expected = sorted({s for s in range(1, 2 * per_epoch + 1) if s % 5 == 0}
                      | {per_epoch, 2 * per_epoch})
    assert [p.step for p in run.sink.step_points()] == expected
    assert all(p.epoch == math.ceil(p.step / per_epoch) for p in run.sink.step_points())


# --- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    run = run_job(spirals_job(epochs=1))
    state = run.sink.state
    payload = checkpoint_state(state, run.spec.model_dump(mode="json"), run.data.normalization,
                               run.final)
    path = tmp_path / "job" / f"step-{state.step}.pt"
    digest, size = write_atomically(payload, path)

    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert size == path.stat().st_size
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no .tmp left behind

    loaded = load_checkpoint(path)  # weights_only=True
    assert loaded["step"] == state.step and loaded["epoch"] == 1
    assert loaded["metrics"] == run.final
    assert JobSpec.model_validate(loaded["spec"]) == run.spec
    for key in ("mean", "std"):
        assert torch.equal(loaded["normalization"][key], run.data.normalization[key])

    torch.manual_seed(123)  # a different initialisation, overwritten by the checkpoint
    restored, _ = build_model(JobSpec.model_validate(loaded["spec"]).model, (2,))
    restored.load_state_dict(loaded["model"])
    restored.eval()
    run.model.eval()
    x = torch.randn(50, 2)
    with torch.no_grad():
        assert torch.equal(restored(x), run.model(x))

    optimizer = build_optimizer(run.spec, restored)
    optimizer.load_state_dict(loaded["optimizer"])
    buffers = [optimizer.state[p]["momentum_buffer"] for p in restored.parameters()]
    want = [run.optimizer.state[p]["momentum_buffer"] for p in run.model.parameters()]
    for got, expected in zip(buffers, want, strict=True):
        assert torch.equal(got, expected)

    # The shuffle generator resumes where it stopped.
    shuffle = torch.Generator()
    shuffle.set_state(loaded["rng"]["shuffle"])
    assert torch.equal(torch.randperm(100, generator=shuffle),
                       torch.randperm(100, generator=state.shuffle))


def test_failed_checkpoint_write_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.save raises
        write_atomically({"not a tensor": object.__new__(_Unpicklable)}, tmp_path / "s.pt")
    assert list(tmp_path.iterdir()) == []


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("cannot be pickled")


def test_rewriting_a_checkpoint_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "step-1.pt"
    write_atomically({"x": torch.zeros(3)}, path)
    digest, _ = write_atomically({"x": torch.ones(3)}, path)
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(3))
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-1.pt"]


# --- data preparation -----------------------------------------------------------------------


def _rows(x: torch.Tensor | np.ndarray) -> set[tuple[float, ...]]:
    array = x.numpy() if isinstance(x, torch.Tensor) else x
    return {tuple(row) for row in array.reshape(len(array), -1).tolist()}


def test_standardisation_uses_the_training_split_only() -> None:
    spec = JobSpec.model_validate({**spirals_job(), "dataset": {
        "name": "spirals", "val_fraction": 0.3, "seed": 4}})
    data = prepare_data(spec, CPU)
    opts = spec.dataset.options()
    arrays = datasets.load("spirals", opts)
    train_idx, _ = datasets.split_indices(len(arrays.x_train), 0.3, 4, arrays.y_train)
    x_train = arrays.x_train[train_idx].astype(np.float64)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)

    assert_close(data.normalization["mean"], torch.tensor(mean, dtype=torch.float32))
    assert_close(data.normalization["std"], torch.tensor(std, dtype=torch.float32))
    # Not the statistics of train + val: the check above could not pass by accident.
    assert not np.allclose(arrays.x_train.mean(axis=0), mean, rtol=0, atol=1e-4)
    # The training tensors are standardised with them; val and test with the same numbers.
    assert_close(data.x_train.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    assert_close(data.x_train.std(0, unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
    assert_close(data.x_test, torch.tensor((arrays.x_test - mean) / std, dtype=torch.float32))


def test_constant_features_standardise_to_zero_not_nan() -> None:
    spec = JobSpec.model_validate({
        "dataset": {"name": "digits"},
        "model": {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10}]},
    })
    data = prepare_data(spec, CPU)
    assert data.input_shape == (1, 8, 8)
    assert torch.isfinite(data.x_train).all() and torch.isfinite(data.x_test).all()
    blank = data.normalization["std"] == 1.0  # the always-empty border pixels
    assert blank.any()
    assert torch.count_nonzero(data.x_train[:, blank]) == 0


@pytest.mark.parametrize("name", ["spirals", "moons", "sine"])
def test_splits_do_not_overlap(name: str) -> None:
    spec = JobSpec.model_validate({
        "dataset": {"name": name, "val_fraction": 0.2, "normalize": "none", "seed": 2},
        "model": {"layers": [{"type": "linear", "out_features": 1}]},
    })
    data = prepare_data(spec, CPU)
    train_rows, val_rows, test_rows = _rows(data.x_train), _rows(data.x_val), _rows(data.x_test)
    assert len(train_rows) == len(data.x_train)  # continuous data: every row is distinct
    assert not train_rows & val_rows
    assert not train_rows & test_rows
    assert not val_rows & test_rows
    n = datasets.describe(name, spec.dataset.options()).n_samples
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == n
    assert len(data.x_val) == pytest.approx(0.2 * (len(data.x_train) + len(data.x_val)), abs=1)


def test_stratification_keeps_class_proportions() -> None:
    spec = JobSpec.model_validate({
        "dataset": {"name": "digits", "val_fraction": 0.25, "seed": 7},
        "model": {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10}]},
    })
    data = prepare_data(spec, CPU)
    train = np.bincount(data.y_train.numpy(), minlength=10)
    val = np.bincount(data.y_val.numpy(), minlength=10)
    test = np.bincount(data.y_test.numpy(), minlength=10)
    total = train + val + test
    assert len(set(total.tolist())) > 1  # digits' classes are unequal, so this is a real test
    assert np.all(np.abs(test - total * datasets.TEST_FRACTION) <= 1)
    assert np.all(np.abs(val - (train + val) * 0.25) <= 1)


def test_val_fraction_zero_means_no_validation() -> None:
    run = run_job({**spirals_job(epochs=1), "dataset": {"name": "spirals", "val_fraction": 0}})
    assert run.data.x_val is None and run.data.y_val is None
    assert "val_loss" not in run.final and "test_loss" in run.final


# --- built-in datasets ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(datasets.BUILTINS))
def test_builtin_is_deterministic_and_matches_describe(name: str) -> None:
    info = datasets.describe(name, datasets.Options(seed=3))
    first = datasets.load(name, datasets.Options(seed=3))
    second = datasets.load(name, datasets.Options(seed=3))
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, key), getattr(second, key))

    assert first.x_train.shape[1:] == first.x_test.shape[1:] == info.input_shape
    assert first.x_train.dtype == np.float32
    assert len(first.x_train) + len(first.x_test) == info.n_samples
    assert first.y_train.shape[1:] == info.target_shape
    if info.task == "classification":
        assert first.y_train.dtype == np.int64
        labels = np.concatenate([first.y_train, first.y_test])
        assert set(np.unique(labels).tolist()) == set(range(info.num_classes))
        assert set(np.unique(first.y_test).tolist()) == set(range(info.num_classes))
        # describe's n_test is round(n * 0.2); stratified rounding is per class.
        assert abs(len(first.x_test) - info.n_test) <= info.num_classes / 2
    else:
        assert info.num_classes is None
        assert first.y_train.dtype == np.float32
        assert len(first.x_test) == info.n_test


@pytest.mark.parametrize("name", sorted(n for n in datasets.BUILTINS if n != "digits"))
def test_synthetic_builtin_differs_across_seeds(name: str) -> None:
    a = datasets.load(name, datasets.Options(seed=0))
    b = datasets.load(name, datasets.Options(seed=1))
    assert not _rows(a.x_train) & _rows(b.x_train)


@pytest.mark.parametrize(
    ("name", "opts"),
    [("spirals", datasets.Options(n_samples=210, classes=5, noise=0.0, seed=2)),
     ("blobs", datasets.Options(n_samples=120, classes=4, seed=2)),
     ("moons", datasets.Options(n_samples=60, seed=2)),
     ("sine", datasets.Options(n_samples=50, noise=0.0, seed=2))],
)
def test_builtin_options_apply(name: str, opts: datasets.Options) -> None:
    info = datasets.describe(name, opts)
    arrays = datasets.load(name, opts)
    assert info.n_samples == opts.n_samples == len(arrays.x_train) + len(arrays.x_test)
    if opts.classes:
        assert info.num_classes == opts.classes
        labels = np.concatenate([arrays.y_train, arrays.y_test])
        assert np.bincount(labels).tolist() == [opts.n_samples // opts.classes] * opts.classes
    if name == "sine":  # noise 0: the targets are exactly sin(x)
        np.testing.assert_allclose(arrays.y_train, np.sin(arrays.x_train), rtol=1e-6)
