"""Data handling: min-max scaling and augmentation of the training split.

Every augmentation is checked against a direct torch computation: reseed, draw the same random
numbers in the order worker/augment.py documents, compute the result by hand. The loop with
augmentation is checked against a plain PyTorch loop that augments the training batches only,
a resumed run against an uninterrupted one, and bad combinations are 422s naming the field.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from core import datasets
from core.jobspec import JobSpec, validate_job
from core.settings import Settings
from core.specs.dataset import DatasetSpec
from models.losses import build_loss
from tests.conftest import ROOT, load_example
from tests.resume import Sink, run_interrupted, start_run
from tests.test_api_specs import _assert_names_field
from tests.test_train_loop import run_job
from worker.augment import build_augmenter
from worker.checkpoints import (
    checkpoint_state,
    load_checkpoint,
    write_atomically,
)
from worker.data import normalize_inputs, prepare_data
from worker.train import train

CPU = torch.device("cpu")


def _augmenter(augment: list[dict], name: str = "digits", num_classes: int | None = 10):
    dataset = DatasetSpec.model_validate({"name": name, "augment": augment})
    return build_augmenter(dataset, "classification", num_classes)


def _inputs(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(7))


def _labels(n: int, classes: int = 10) -> torch.Tensor:
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(8))


# --- by hand: what each augmentation should do to one sample ----------------------------------


def _shift_by_hand(sample: torch.Tensor, moves: list[int]) -> torch.Tensor:
    """Move `sample` (C, *spatial) by `moves[d]` along spatial dimension d, zero fill."""
    out = torch.zeros_like(sample)
    dst, src = [slice(None)], [slice(None)]
    for move, size in zip(moves, sample.shape[1:], strict=True):
        dst.append(slice(max(move, 0), size + min(move, 0)))
        src.append(slice(max(-move, 0), size - max(move, 0)))
    out[tuple(dst)] = sample[tuple(src)]
    return out


def _crop_by_hand(sample: torch.Tensor, padding: int, top: int, left: int) -> torch.Tensor:
    height, width = sample.shape[1:]
    padded = F.pad(sample, (padding,) * 4)
    return padded[:, top:top + height, left:left + width]


def _mixup_by_hand(x: torch.Tensor, target: torch.Tensor, alpha: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    a = torch.tensor(alpha)
    lam = torch.distributions.Beta(a, a).sample()
    perm = torch.randperm(len(x))
    return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm], lam, perm


# --- each augmentation against torch on the same seed -------------------------------------------


def test_no_augmentation_builds_nothing() -> None:
    assert _augmenter([]) is None


def test_gaussian_noise_adds_the_seeded_noise() -> None:
    x, y = _inputs(6, 2, 5, 7), _labels(6)
    torch.manual_seed(3)
    out, target = _augmenter([{"type": "gaussian_noise", "std": 0.3}])(x, y)
    torch.manual_seed(3)
    assert torch.equal(out, x + torch.randn(x.shape) * 0.3)
    assert target is y
    assert not torch.equal(out, x)


def test_random_shift_moves_images_along_h_and_w_with_zero_fill() -> None:
    x = _inputs(12, 2, 5, 7)
    torch.manual_seed(4)
    out, _ = _augmenter([{"type": "random_shift", "max_shift": 2}])(x, _labels(12))
    torch.manual_seed(4)
    moves = torch.randint(-2, 3, (12, 2))
    assert len({tuple(m) for m in moves.tolist()}) > 3  # the test sees varied shifts
    want = torch.stack([_shift_by_hand(x[i], moves[i].tolist()) for i in range(12)])
    assert torch.equal(out, want)
    assert out.is_contiguous()


def test_random_shift_moves_signals_along_l() -> None:
    x = _inputs(10, 3, 9)  # (C, L) signals
    torch.manual_seed(5)
    out, _ = _augmenter([{"type": "random_shift", "max_shift": 3}])(x, _labels(10))
    torch.manual_seed(5)
    moves = torch.randint(-3, 4, (10, 1))
    assert len(set(moves.flatten().tolist())) > 2
    want = torch.stack([_shift_by_hand(x[i], moves[i].tolist()) for i in range(10)])
    assert torch.equal(out, want)


def test_random_crop_pads_then_crops_at_a_random_offset_per_sample() -> None:
    x = _inputs(12, 2, 5, 7)
    torch.manual_seed(6)
    out, _ = _augmenter([{"type": "random_crop", "padding": 2}])(x, _labels(12))
    torch.manual_seed(6)
    offsets = torch.randint(0, 5, (12, 2))
    assert len({tuple(o) for o in offsets.tolist()}) > 3
    want = torch.stack([_crop_by_hand(x[i], 2, *offsets[i].tolist()) for i in range(12)])
    assert torch.equal(out, want)


def test_horizontal_flip_mirrors_along_w_with_probability_p() -> None:
    x = _inputs(40, 2, 5, 7)
    torch.manual_seed(7)
    out, _ = _augmenter([{"type": "horizontal_flip", "p": 0.5}])(x, _labels(40))
    torch.manual_seed(7)
    flips = (torch.rand(40) < 0.5).tolist()
    assert 0 < sum(flips) < 40  # both branches are exercised
    want = torch.stack([x[i].flip(-1) if flips[i] else x[i] for i in range(40)])
    assert torch.equal(out, want)


def test_mixup_of_class_labels_makes_mixed_one_hot_targets() -> None:
    x, y = _inputs(16, 1, 4, 4), _labels(16)
    torch.manual_seed(8)
    out, target = _augmenter([{"type": "mixup", "alpha": 0.4}])(x, y)
    torch.manual_seed(8)
    want_x, want_target, lam, perm = _mixup_by_hand(x, torch.eye(10)[y], 0.4)
    assert 0 < lam.item() < 1 and not torch.equal(perm, torch.arange(16))
    assert torch.equal(out, want_x)
    assert torch.equal(target, want_target)
    assert target.shape == (16, 10) and target.dtype == torch.float32
    assert_close(target.sum(1), torch.ones(16))


def test_mixup_of_float_targets_mixes_them_as_they_are() -> None:
    x = _inputs(16, 1)
    y = torch.randn(16, 1, generator=torch.Generator().manual_seed(9))  # regression targets
    dataset = DatasetSpec.model_validate({"name": "sine", "augment": [{"type": "mixup"}]})
    torch.manual_seed(9)
    out, target = build_augmenter(dataset, "regression", None)(x, y)
    torch.manual_seed(9)
    want_x, want_target, _, _ = _mixup_by_hand(x, y, 0.2)
    assert torch.equal(out, want_x) and torch.equal(target, want_target)
    assert target.shape == (16, 1)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_of_mixed_targets_is_the_mixture_of_the_two_losses(
    label_smoothing: float,
) -> None:
    x, y = _inputs(16, 1, 4, 4), _labels(16)
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(10))
    torch.manual_seed(11)
    _, target = _augmenter([{"type": "mixup", "alpha": 1.0}])(x, y)
    torch.manual_seed(11)
    _, _, lam, perm = _mixup_by_hand(x, torch.eye(10)[y], 1.0)
    loss = build_loss(JobSpec.model_validate({
        **load_example("digits-mlp"),
        "loss": {"type": "cross_entropy", "label_smoothing": label_smoothing}}).loss)
    hand = (lam * F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            + (1 - lam) * F.cross_entropy(logits, y[perm], label_smoothing=label_smoothing))
    assert_close(loss(logits, target), hand, rtol=1e-6, atol=1e-6)


def test_augmentations_apply_in_the_order_given() -> None:
    x, y = _inputs(8, 1, 6, 6), _labels(8)
    spec = [{"type": "random_shift", "max_shift": 1}, {"type": "gaussian_noise", "std": 0.5},
            {"type": "mixup", "alpha": 0.5}]
    torch.manual_seed(12)
    out, target = _augmenter(spec)(x, y)
    torch.manual_seed(12)
    moves = torch.randint(-1, 2, (8, 2))
    shifted = torch.stack([_shift_by_hand(x[i], moves[i].tolist()) for i in range(8)])
    noisy = shifted + torch.randn(shifted.shape) * 0.5
    want_x, want_target, _, _ = _mixup_by_hand(noisy, torch.eye(10)[y], 0.5)
    assert torch.equal(out, want_x) and torch.equal(target, want_target)


@pytest.mark.parametrize(("augment", "shape"), [
    ({"type": "gaussian_noise"}, (3,)),
    ({"type": "random_shift", "max_shift": 2}, (2, 11)),
    ({"type": "random_shift", "max_shift": 2}, (3, 6, 9)),
    ({"type": "random_crop", "padding": 3}, (3, 6, 9)),
    ({"type": "horizontal_flip"}, (3, 6, 9)),
    ({"type": "mixup"}, (3, 6, 9)),
], ids=lambda v: v["type"] if isinstance(v, dict) else str(v))
def test_shapes_and_dtypes_are_kept(augment: dict, shape: tuple[int, ...]) -> None:
    x, y = _inputs(5, *shape), _labels(5)
    out, target = _augmenter([augment])(x, y)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert len(target) == 5
    assert torch.equal(x, _inputs(5, *shape))  # the batch itself is not changed in place


# --- in the loop --------------------------------------------------------------------------------


def _digits_job(augment: list[dict], **training: Any) -> dict:
    return {
        "dataset": {"name": "digits", "val_fraction": 0.1, "augment": augment},
        "model": {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10}]},
        "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
        "training": {"epochs": 2, "batch_size": 64, "seed": 0, **training},
    }


LOOP_AUGMENT = [{"type": "random_shift", "max_shift": 1}, {"type": "horizontal_flip"},
                {"type": "gaussian_noise", "std": 0.2}, {"type": "mixup", "alpha": 0.4}]


def test_the_loop_augments_training_batches_only() -> None:
    run = run_job(_digits_job(LOOP_AUGMENT, epochs=1))
    data, cfg = run.data, run.spec.training
    # The training tensors themselves were never changed.
    assert torch.equal(data.x_train, prepare_data(run.spec, CPU).x_train)

    ref = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    ref.load_state_dict({k.removeprefix("layers."): v for k, v in run.initial_state.items()})
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    torch.set_rng_state(run.rng_at_start)
    n = len(data.x_train)
    epochs = []
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=shuffle)
        total, correct = 0.0, 0
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            xb, yb = data.x_train[idx], data.y_train[idx]
            moves = torch.randint(-1, 2, (len(idx), 2))
            xb = torch.stack([_shift_by_hand(xb[i], moves[i].tolist()) for i in range(len(xb))])
            flips = (torch.rand(len(idx)) < 0.5).tolist()
            xb = torch.stack([s.flip(-1) if f else s for s, f in zip(xb, flips, strict=True)])
            xb = xb + torch.randn(xb.shape) * 0.2
            xb, soft, _, _ = _mixup_by_hand(xb, torch.eye(10)[yb], 0.4)
            out = ref(xb)
            loss = -(soft * F.log_softmax(out, 1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += (out.argmax(1) == yb).sum().item()  # against the unmixed labels
        with torch.no_grad():
            val_out = ref(data.x_val)  # not augmented
        epochs.append({"train_loss": total / n, "train_accuracy": correct / n,
                       "val_loss": F.cross_entropy(val_out, data.y_val).item(),
                       "val_accuracy": (val_out.argmax(1) == data.y_val).float().mean().item()})

    ours = {k.removeprefix("layers."): v for k, v in run.model.state_dict().items()}
    for key, value in ref.state_dict().items():
        assert_close(ours[key], value, msg=key)
    for got, want in zip(run.sink.epochs, epochs, strict=True):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    with torch.no_grad():
        test_out = ref(data.x_test)
    assert run.final["test_loss"] == pytest.approx(
        F.cross_entropy(test_out, data.y_test).item(), rel=1e-5)


@pytest.mark.parametrize("stop_at", [15, 11], ids=["mid-epoch", "epoch-end"])  # 11 an epoch
def test_resumed_run_repeats_the_same_augmentations(stop_at: int, tmp_path: Path) -> None:
    spec = JobSpec.model_validate(_digits_job(
        [{"type": "random_crop", "padding": 1}, {"type": "gaussian_noise", "std": 0.3},
         {"type": "mixup", "alpha": 0.4}], batch_size=128, log_every_steps=1))

    runs = run_interrupted(spec, stop_at, tmp_path)
    assert runs.resumed_from == stop_at
    runs.assert_same_weights()
    assert runs.joined("train_loss_step") == runs.straight.series("train_loss_step")


def test_digits_with_random_shift_still_learns() -> None:
    job = json.loads((ROOT / "examples" / "digits-cnn-augmented.json").read_text())
    spec = JobSpec.model_validate(job)
    assert [a.type for a in spec.dataset.augment] == ["random_shift"]
    assert spec.dataset.normalize == "standardize"
    validate_job(spec, Settings())
    run = run_job(job)
    assert run.final["test_accuracy"] >= 0.95, run.final


# --- min-max scaling ----------------------------------------------------------------------------


def _minmax_spirals() -> JobSpec:
    return JobSpec.model_validate({
        "dataset": {"name": "spirals", "val_fraction": 0.3, "seed": 4, "normalize": "minmax"},
        "model": {"layers": [{"type": "linear", "out_features": 3}]},
        "training": {"epochs": 1},
    })


def test_minmax_uses_the_training_split_only() -> None:
    spec = _minmax_spirals()
    data = prepare_data(spec, CPU)
    arrays = datasets.load("spirals", spec.dataset.options())
    train_idx, val_idx = datasets.split_indices(len(arrays.x_train), 0.3, 4, arrays.y_train)
    x_train = arrays.x_train[train_idx]
    low, high = x_train.min(axis=0), x_train.max(axis=0)

    assert set(data.normalization) == {"min", "max"}
    assert torch.equal(data.normalization["min"], torch.from_numpy(low))
    assert torch.equal(data.normalization["max"], torch.from_numpy(high))
    assert_close(data.x_train.min(0).values, torch.zeros(2), atol=1e-6, rtol=0)
    assert_close(data.x_train.max(0).values, torch.ones(2), atol=1e-6, rtol=0)
    # Validation and test get the training split's numbers, not their own: some of their
    # values fall outside [0, 1], which refitting on them could not produce.
    for x_raw, tensor in ((arrays.x_train[val_idx], data.x_val), (arrays.x_test, data.x_test)):
        assert_close(tensor, torch.from_numpy((x_raw - low) / (high - low)))
    held_out = torch.cat([data.x_val, data.x_test])
    assert (held_out < 0).any() or (held_out > 1).any()


def test_minmax_maps_constant_features_to_zero_not_nan() -> None:
    spec = JobSpec.model_validate({
        "dataset": {"name": "digits", "normalize": "minmax"},
        "model": {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10}]},
    })
    data = prepare_data(spec, CPU)
    assert torch.isfinite(data.x_train).all() and torch.isfinite(data.x_test).all()
    constant = data.normalization["max"] == data.normalization["min"]  # the blank border
    assert constant.any()
    assert torch.count_nonzero(data.x_train[:, constant]) == 0
    assert data.x_train.min() == 0 and data.x_train.max() == 1


def test_minmax_statistics_survive_the_checkpoint(tmp_path: Path) -> None:
    spec = _minmax_spirals()
    sink = Sink()
    data, model, optimizer, scheduler = start_run(spec, sink)
    train(spec, model, optimizer, build_loss(spec.loss), data, [sink], scheduler=scheduler)
    path = tmp_path / "final.pt"
    write_atomically(checkpoint_state(sink.state, sink.spec, data.normalization, {}), path)
    saved = load_checkpoint(path)["normalization"]
    for key in ("min", "max"):
        assert torch.equal(saved[key], data.normalization[key])
    # What an evaluator does with a downloaded checkpoint: raw inputs -> the model's inputs.
    raw = torch.from_numpy(datasets.load("spirals", spec.dataset.options()).x_test)
    assert torch.equal(normalize_inputs(raw, saved), data.x_test)


# --- validation -----------------------------------------------------------------------------


def _with(dataset: dict, loss: dict | None = None, out_features: int | None = None
          ) -> dict:
    spec = copy.deepcopy(load_example("digits-mlp"))
    spec["dataset"] = dataset
    if loss is not None:
        spec["loss"] = loss
    if out_features is not None:
        spec["model"]["layers"] = [{"type": "flatten"},
                                   {"type": "linear", "out_features": out_features}]
    return spec


NOISE = {"type": "gaussian_noise", "std": 0.1}
BAD_AUGMENT = [
    ("crop-on-features",
     _with({"name": "spirals", "augment": [NOISE, {"type": "random_crop"}]}, out_features=3),
     "dataset.augment[1]", "needs images (C, H, W); the inputs of spirals are (2,)"),
    ("shift-on-features",
     _with({"name": "spirals", "augment": [{"type": "random_shift"}]}, out_features=3),
     "dataset.augment[0]", "needs signals (C, L) or images (C, H, W)"),
    ("flip-on-features",
     _with({"name": "sine", "augment": [{"type": "horizontal_flip"}]}, {"type": "mse"}, 1),
     "dataset.augment[0]", "the inputs of sine are (1,)"),
    ("shift-as-large-as-the-image",
     _with({"name": "digits", "augment": [{"type": "random_shift", "max_shift": 8}]}),
     "dataset.augment[0]", "use a max_shift of at most 7"),
    ("padding-as-large-as-the-image",
     _with({"name": "digits", "augment": [NOISE, NOISE, {"type": "random_crop", "padding": 9}]}),
     "dataset.augment[2]", "use a padding of at most 7"),
    ("mixup-with-class-weights",
     _with({"name": "digits", "augment": [{"type": "mixup"}]},
           {"type": "cross_entropy", "weight": [1.0] * 10}),
     "dataset.augment[0]", "cannot be combined with loss.weight"),
    ("noise-std-negative",
     _with({"name": "digits", "augment": [{"type": "gaussian_noise", "std": -1}]}),
     "dataset.augment[0].std", "greater than 0"),
    ("flip-p-above-one",
     _with({"name": "digits", "augment": [{"type": "horizontal_flip", "p": 1.5}]}),
     "dataset.augment[0].p", "less than or equal to 1"),
    ("mixup-alpha-zero",
     _with({"name": "digits", "augment": [{"type": "mixup", "alpha": 0}]}),
     "dataset.augment[0].alpha", "greater than 0"),
    ("unknown-augmentation",
     _with({"name": "digits", "augment": [{"type": "rotate"}]}),
     "dataset.augment[0]", "unknown type 'rotate'"),
    ("unknown-normalisation",
     _with({"name": "digits", "normalize": "zscore"}),
     "dataset.normalize", "'standardize', 'minmax' or 'none'"),
]


@pytest.mark.parametrize(("spec", "field", "phrase"),
                         [pytest.param(*case[1:], id=case[0]) for case in BAD_AUGMENT])
def test_a_bad_augmentation_is_422_naming_the_field(client, spec, field, phrase) -> None:
    response = client.post("/v1/jobs/validate", json=spec)
    _assert_names_field(response, field, phrase)


def test_mixup_of_class_labels_needs_cross_entropy(client) -> None:
    # Binary bce_with_logits on moons' integer labels: mixup would make (n, 2) one-hot targets
    # for a single output, so it is refused.
    spec = load_example("moons-bce")
    spec["dataset"]["augment"] = [NOISE, {"type": "mixup"}]
    _assert_names_field(client.post("/v1/jobs/validate", json=spec), "dataset.augment[1]",
                        "only cross_entropy takes, but loss.type is bce_with_logits")


def _multilabel_mixup() -> dict:
    spec = load_example("zones-multilabel")  # float (n, 4) 0/1 targets: mixed as they are
    spec["dataset"]["augment"] = [{"type": "mixup"}]
    return spec


def test_augmentations_that_fit_validate(client) -> None:
    for spec in (
        _with({"name": "digits", "normalize": "minmax", "augment": [
            {"type": "random_crop", "padding": 7}, {"type": "random_shift", "max_shift": 7},
            {"type": "horizontal_flip"}, NOISE, {"type": "mixup"}]}),
        _with({"name": "sine", "augment": [NOISE, {"type": "mixup"}]}, {"type": "mse"}, 1),
        _with({"name": "spirals", "augment": [NOISE, {"type": "mixup"}]},
              {"type": "cross_entropy", "label_smoothing": 0.1}, 3),
        _multilabel_mixup(),
    ):
        response = client.post("/v1/jobs/validate", json=spec)
        assert response.status_code == 200, response.text


def test_multilabel_mixup_trains_on_mixed_float_targets() -> None:
    job = _multilabel_mixup()
    job["training"] = {**job.get("training", {}), "epochs": 1}
    run = run_job(job)
    assert run.data.y_train.is_floating_point() and run.data.y_train.shape[1:] == (4,)
    assert np.isfinite(run.final["train_loss"]) and np.isfinite(run.final["test_loss"])
