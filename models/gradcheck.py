"""Gradient checking: autograd against central differences, per parameter tensor.

The check runs on a float64 copy of the network on the CPU, so the caller's network, its
gradients, its batchnorm running statistics and torch's global RNG are left as they were.
Every forward runs in train mode from the same RNG seed: dropout draws the same mask each
time and batchnorm normalises with the batch's own statistics, so the function being
differentiated is the one training differentiates, and it is the same function at every
perturbed point.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from models.layers import MAXOUT_CONVS, Maxout

DEFAULT_EPS = 1e-6
# The step a user may choose. Below MIN_EPS float64 rounding (LOSS_ROUNDING · |loss| / eps)
# swamps every gradient worth checking; above MAX_EPS the difference's own truncation error
# (of order eps²) makes correct layers look wrong, which the lesson can show but no more.
MIN_EPS = 1e-10
MAX_EPS = 1e-2
MAX_COORDINATES = 30  # per tensor; smaller tensors are checked at every coordinate

# Upper bounds of the relative error for each verdict, best first; above the last: "wrong".
THRESHOLDS = ((1e-7, "correct"), (1e-5, "worth a look"), (1e-3, "suspect"))
VERDICTS = ("correct", "worth a look", "suspect", "wrong")

# A float64 loss carries rounding of about this many parts of its size, so a central
# difference is off by up to this · |loss| / eps per coordinate (measured: a tenth of it).
# Gradients below that resolution cannot be checked: where autograd's is zero and the
# difference below it, both count as zero (a bias followed by batchnorm has an exact-zero
# gradient, and its difference is pure noise); a disagreement that rounding alone explains
# (a vanishing gradient) is "worth a look" at worst.
LOSS_ROUNDING = 1e-15

# Modules whose function has kinks: a perturbation that crosses one is a false alarm.
_KINKED = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.MaxPool1d, nn.MaxPool2d, Maxout, *MAXOUT_CONVS,
           nn.L1Loss, nn.HuberLoss)


@dataclass(frozen=True)
class TensorCheck:
    name: str  # the parameter name, e.g. `layers.1.weight`
    shape: tuple[int, ...]
    coordinates: int  # how many of its entries were perturbed
    relative_error: float
    verdict: str


@dataclass
class GradcheckReport:
    verdict: str  # the worst of the tensors' verdicts
    tensors: list[TensorCheck]
    notes: list[str] = field(default_factory=list)
    batch_size: int = 0
    eps: float = DEFAULT_EPS

    def worst(self) -> TensorCheck | None:
        if not self.tensors:
            return None
        return max(self.tensors, key=lambda t: (VERDICTS.index(t.verdict), t.relative_error))

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for tensor in out["tensors"]:
            tensor["shape"] = list(tensor["shape"])
        return out


def verdict_for(relative_error: float) -> str:
    for bound, verdict in THRESHOLDS:
        if relative_error < bound:
            return verdict
    return "wrong"


def relative_error(numerical: torch.Tensor, analytic: torch.Tensor) -> float:
    """||g_num - g|| / (||g_num|| + ||g||); 0 when both are 0."""
    scale = float(numerical.norm() + analytic.norm())
    return 0.0 if scale == 0 else float((numerical - analytic).norm()) / scale


def check_gradients(
    model: nn.Module,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = DEFAULT_EPS,
    max_coordinates: int = MAX_COORDINATES,
    seed: int = 0,
) -> GradcheckReport:
    """Compare autograd's gradient of `loss_fn(model(x), y)` with central differences
    (f(θ+eps) − f(θ−eps)) / 2·eps for every parameter tensor, at up to `max_coordinates`
    entries of each, drawn with `seed`. Batchnorm needs at least 2 samples in x."""
    net = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).train()
    criterion = copy.deepcopy(loss_fn).to(device="cpu", dtype=torch.float64)
    x = x.detach().to(device="cpu", dtype=torch.float64)
    y = y.detach().to("cpu")
    if y.is_floating_point():
        y = y.to(torch.float64)

    with torch.random.fork_rng(devices=[]), _one_thread():

        def loss_at() -> torch.Tensor:
            # The same dropout mask for every forward. The CPU generator alone: the copy is
            # on the CPU, and torch.manual_seed would also queue a CUDA seeding, with a
            # captured stack, on every forward of a process without CUDA initialised.
            torch.random.default_generator.manual_seed(seed)
            return criterion(net(x), y)

        net.zero_grad(set_to_none=True)
        loss = loss_at()
        loss.backward()
        resolution = LOSS_ROUNDING * max(1.0, abs(loss.item())) / eps
        sampler = torch.Generator().manual_seed(seed)
        checks, limited = [], {"zero": [], "rounding": [], "frozen": []}
        with torch.no_grad():
            for name, param in net.named_parameters():
                if not param.requires_grad:
                    limited["frozen"].append(name)
                    continue
                check, limit = _check_tensor(name, param, loss_at, eps, max_coordinates,
                                             sampler, resolution)
                checks.append(check)
                if limit:
                    limited[limit].append(name)

    verdict = max((c.verdict for c in checks), key=VERDICTS.index, default="correct")
    report = GradcheckReport(verdict, checks, batch_size=len(x), eps=eps)
    report.notes = _notes(net, criterion, report, limited, resolution, max_coordinates)
    return report


@contextmanager
def _one_thread() -> Iterator[None]:
    """Hundreds of forwards on a handful of samples: waking torch's thread pool for each
    costs more than it saves, and on a busy machine many times more (measured: 10x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _check_tensor(name, param, loss_at, eps, max_coordinates, sampler, resolution
                  ) -> tuple[TensorCheck, str | None]:
    """The tensor's check, and "zero" or "rounding" when its gradient is below or near the
    resolution of central differences (None otherwise)."""
    analytic_all = param.grad if param.grad is not None else torch.zeros_like(param)
    n = param.numel()
    if n <= max_coordinates:
        coords = torch.arange(n)
    else:
        coords = torch.randperm(n, generator=sampler)[:max_coordinates].sort().values
    flat = param.data.view(-1)  # parameters are contiguous: this writes into the network
    numerical = torch.empty(len(coords), dtype=torch.float64)
    for k, i in enumerate(coords.tolist()):
        original = flat[i].item()
        flat[i] = original + eps
        plus = loss_at().item()
        flat[i] = original - eps
        minus = loss_at().item()
        flat[i] = original
        numerical[k] = (plus - minus) / (2 * eps)
    analytic = analytic_all.reshape(-1)[coords]
    noise = resolution * math.sqrt(len(coords))  # what rounding alone can explain
    limited = None
    # Zero to autograd's rounding, and no larger than the differences' rounding: both are 0.
    if float(analytic.norm()) <= noise * 1e-3 and float(numerical.norm()) <= noise:
        error, limited = 0.0, "zero"
    else:
        error = relative_error(numerical, analytic)
    verdict = verdict_for(error)
    if VERDICTS.index(verdict) > 1 and float((numerical - analytic).norm()) <= noise:
        verdict, limited = "worth a look", "rounding"
    return TensorCheck(name, tuple(param.shape), len(coords), error, verdict), limited


def _notes(net: nn.Module, criterion: nn.Module, report: GradcheckReport,
           limited: dict[str, list[str]], resolution: float, max_coordinates: int) -> list[str]:
    modules = list(net.modules())
    notes = [
        f"central differences with eps {report.eps:g} in float64 on a copy of the network, "
        f"at up to {max_coordinates} seeded coordinates per tensor (every coordinate of "
        "smaller tensors)",
    ]
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in modules):
        notes.append(
            "dropout: train mode with one fixed mask (the RNG is reseeded before every "
            "forward), so every evaluation drops the same units"
        )
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules):
        notes.append(
            "batchnorm: train mode, normalising with this batch's own statistics as training "
            "does; the network's running statistics are not changed (the check works on a copy)"
        )
    if any(isinstance(m, _KINKED) for m in [*modules, criterion]):
        notes.append(
            "the network or loss has kinks (relu, max, l1 or huber): a perturbation that "
            "crosses one can make a correct tensor look suspect; recheck with another seed"
        )
    if limited["frozen"]:
        notes.append(f"{', '.join(limited['frozen'])}: frozen (not trained), so not checked")
    if limited["zero"]:
        notes.append(
            f"{', '.join(limited['zero'])}: autograd's gradient is zero and the numerical one "
            f"is below what central differences resolve (about {resolution:.0e} per "
            "coordinate): both count as zero"
        )
    if limited["rounding"]:
        notes.append(
            f"{', '.join(limited['rounding'])}: gradients so small (vanishing) that float64 "
            "rounding explains the whole disagreement; such a tensor cannot be checked more "
            "closely than 'worth a look'"
        )
    worst = report.worst()
    if worst is not None and worst.verdict != "correct":
        notes.append(
            f"worst tensor: {worst.name} {list(worst.shape)}, relative error "
            f"{worst.relative_error:.2e} ({worst.verdict})"
        )
    return notes
