"""The preflight's checks (worker/preflight.py runs them): the loss at initialisation, the
gradient check, and fitting a small batch. Each works on its own copy of the network, so the
network the job trains keeps its weights and batchnorm statistics; the caller keeps torch's
RNG as it was (worker/preflight.py forks it), so the run is the one it would be without them.

Findings follow the diagnosis contract (docs/training.md, Preflight): a stable name, the
evidence with its numbers, and actions that are spec changes.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.diagnosis.thresholds import INITIAL_LOSS_FLOOR
from core.jobspec import JobSpec
from models.gradcheck import DEFAULT_EPS, MAX_COORDINATES, GradcheckReport, check_gradients
from worker.evaluate import ACCURACY_TASKS, batch_predictions, count_correct
from worker.optim import build_optimizer
from worker.preflight_actions import initial_loss_actions, overfit_actions
from worker.regularize import clip_gradients, l1_parameters, l1_penalty

OVERFIT_SAMPLES = 16
OVERFIT_MAX_STEPS = 300
# The pass test reads the mean of the last steps: with dropout a single step's batch can be
# right by luck, and one lucky step is not a fit.
OVERFIT_WINDOW = 10
OVERFIT_ACCURACY = 0.95  # of the training-mode answers, on the accuracy tasks
OVERFIT_LOSS_SHARE = 0.05  # "near zero": the loss below this share of where it started
INITIAL_LOSS_SAMPLES = 256
REGRESSION_RATIO = 10.0  # mse's allowance over the loss of predicting the mean; see allowed_ratio
GRADCHECK_SAMPLES = 8  # as the `"gradcheck": true` preflight always has: batchnorm needs 2+
# Entries checked per tensor by the default preflight: a third of models/gradcheck.py's 30
# (what `"gradcheck": true` and POST /v1/gradcheck check), for a third of the cost on every
# job. A broken backward is wrong at nearly every entry, so 10 find it as surely.
PREFLIGHT_COORDINATES = 10

# models/gradcheck.py's verdicts (below 1e-7 correct, below 1e-5 worth a look, below 1e-3
# suspect, else wrong) as the preflight's: "worth a look" passes, since float64 differences
# across relu kinks commonly land there on correct code; "suspect" (about 1e-5 and up: check
# carefully) warns; "wrong" (1e-3 and up) fails.
GRADCHECK_VERDICTS = {"correct": "pass", "worth a look": "pass", "suspect": "warn",
                      "wrong": "fail"}


@dataclass
class CheckResult:
    name: str
    verdict: str  # "pass" | "warn" | "fail" | "skipped"
    evidence: str
    seconds: float = 0.0
    data: dict[str, float] = field(default_factory=dict)
    finding: dict[str, Any] | None = None  # in the diagnosis contract's shape

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict, "evidence": self.evidence,
                "seconds": round(self.seconds, 4), "data": finite(self.data)}


def finite(data: dict[str, Any]) -> dict[str, float]:
    """The numbers JSON can hold: a NaN or infinite one (a loss that blew up) is left out,
    and the evidence says it in words."""
    return {k: v for k, v in data.items()
            if isinstance(v, int | float) and math.isfinite(v)}


def uninformed_output(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """What a network that knows nothing yet should answer: logits of 0 for the
    classification tasks (every class equally likely: the loss is ln C, or ln 2 per output
    for bce_with_logits), the targets' mean for regression."""
    if task in ACCURACY_TASKS:
        return torch.zeros_like(out)
    return y.to(out.dtype).mean(dim=0, keepdim=True).expand_as(y)


def _expected_what(task: str, out: torch.Tensor, expected: float) -> str:
    if task == "regression":
        return "predicting the targets' mean"
    if task == "multilabel" or out.shape[1] == 1:
        classes, what = 2, "probability 0.5 per output"
    else:
        classes, what = out.shape[1], f"a uniform prediction over {out.shape[1]} classes"
    return what + (f" (ln {classes})" if abs(expected - math.log(classes)) < 1e-3 else "")


def allowed_ratio(spec: JobSpec, task: str) -> float:
    """How many times the uninformed loss L* the initial loss may reach: 2 (|L0 − L*| < L*)
    for the classification losses; for regression, where an untrained network's outputs
    spread about as widely as the targets and add their own variance to L*, 10 for mse
    (outputs spread about 3× the targets' standard deviation) and √10 for l1 and huber,
    which grow linearly with the error."""
    if task != "regression":
        return 2.0
    return REGRESSION_RATIO if spec.loss.type == "mse" else math.sqrt(REGRESSION_RATIO)


def initial_loss(spec: JobSpec, model: nn.Module, loss_fn: nn.Module, x: torch.Tensor,
                 y: torch.Tensor, task: str) -> CheckResult:
    """The training-mode loss at initialisation L0 on `x` against an uninformed prediction's
    loss L* (uninformed_output): L0 ≥ allowed_ratio · L* fails. For classification that is
    TheDeepChecker's |L0 − ln C| ≥ ln C (L0 cannot be below 0), read the same way for ln 2."""
    net = copy.deepcopy(model).train()
    with torch.no_grad():
        out = net(x)
        loss = float(loss_fn(out, y))
        expected = float(loss_fn(uninformed_output(out, y, task), y))
    n = len(x)
    data = {"initial_loss": loss, "expected_loss": expected, "samples": n,
            "output_std": float(out.float().std()) if out.numel() > 1 else 0.0}
    what = _expected_what(task, out, expected)
    if not math.isfinite(loss):
        evidence = f"the loss at initialisation is {loss} on {n} training samples"
        return CheckResult("initial_loss", "fail", evidence, data=data,
                           finding=_finding("suspicious_initial_loss", evidence, data,
                                            initial_loss_actions(spec, task, y)))
    if expected <= 0:
        return CheckResult("initial_loss", "skipped",
                           f"{what} already has loss {expected:.3g} on these {n} samples "
                           "(constant targets): nothing to compare with", data=data)
    ratio = allowed_ratio(spec, task)
    limit = ratio * expected
    if task != "regression":
        # The run's rule (core/diagnosis/thresholds.py): at least INITIAL_LOSS_FLOOR nats
        # above L* too. Logits of standard deviation s add about s^2/2 to the loss whatever
        # C is, and a healthy default-initialised network's start at s of 1-2, so a margin of
        # ln 2 = 0.69 for a single logit or multi-label outputs fails healthy seeds (moons,
        # seed 1: 1.8 with s = 2.0).
        limit = max(limit, expected + INITIAL_LOSS_FLOOR)
        ratio = limit / expected
    data |= {"allowed_loss": limit}
    evidence = (f"loss at initialisation {loss:.4g} on {n} training samples against "
                f"{expected:.4g} for {what}")
    if loss < limit:
        return CheckResult("initial_loss", "pass", evidence + f", below {limit:.4g} "
                           f"({ratio:.3g}×)", data=data)
    evidence += (f": at least {limit:.4g} ({ratio:.3g}×; the network's outputs start with "
                 f"standard deviation {data['output_std']:.3g})")
    if task == "regression":
        mean_out, mean_y = float(out.float().mean()), float(y.float().mean())
        data |= {"output_mean": mean_out, "target_mean": mean_y}
        evidence += f"; outputs average {mean_out:.3g}, targets {mean_y:.3g}"
    return CheckResult("initial_loss", "fail", evidence, data=data,
                       finding=_finding("suspicious_initial_loss", evidence, data,
                                        initial_loss_actions(spec, task, y)))


def gradcheck_cost_s(model: nn.Module, x: torch.Tensor, max_coordinates: int) -> float:
    """About how long check_gradients takes on `x`: one float64 forward on the CPU, timed,
    times the forwards it runs (two per coordinate checked)."""
    net = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).train()
    x64 = x.detach().to(device="cpu", dtype=torch.float64)
    coordinates = sum(min(p.numel(), max_coordinates) for p in net.parameters()
                      if p.requires_grad)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the check runs
    try:
        with torch.no_grad():
            started = time.perf_counter()
            net(x64)
            forward_s = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return forward_s * (2 * coordinates + 3)


def gradient_check(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   seed: int, max_coordinates: int = MAX_COORDINATES, eps: float = DEFAULT_EPS
                   ) -> tuple[CheckResult, GradcheckReport]:
    report = check_gradients(model, loss_fn, x, y, eps=eps, seed=seed,
                             max_coordinates=max_coordinates)
    worst = report.worst()
    verdict = GRADCHECK_VERDICTS[report.verdict]
    if worst is None:
        return CheckResult("gradcheck", verdict, "no trainable parameters to check"), report
    data = {"relative_error": worst.relative_error, "tensors": len(report.tensors),
            "samples": report.batch_size, "eps": report.eps,
            "coordinates": sum(t.coordinates for t in report.tensors)}
    evidence = (f"{len(report.tensors)} tensors ({data['coordinates']} entries) on "
                f"{report.batch_size} training samples: "
                f"worst relative error {worst.relative_error:.2e} ({worst.name}), "
                f"'{report.verdict}' (below 1e-7 correct, below 1e-5 worth a look, below "
                "1e-3 suspect, else wrong); the full report: POST /v1/gradcheck, or "
                "\"gradcheck\": true for summary.gradcheck")
    return CheckResult("gradcheck", verdict, evidence, data=data), report


def overfit_small_batch(spec: JobSpec, model: nn.Module, loss_fn: nn.Module, x: torch.Tensor,
                        y: torch.Tensor, task: str, deadline: float) -> CheckResult:
    """Train a copy of the network on `x` alone with the spec's optimizer (its weight decay,
    L1 and clipping too; no schedule, augmentation or mixed precision) for at most
    OVERFIT_MAX_STEPS steps, or until `deadline` (time.monotonic()). A network that can
    learn at all fits 16 samples: the mean of the last OVERFIT_WINDOW steps' training-mode
    accuracy reaches 95%, or their loss falls below 5% of the first step's."""
    net = copy.deepcopy(model).train()
    optimizer = build_optimizer(spec, net)
    reg = spec.regularization
    penalised = l1_parameters(net) if reg.l1 > 0 else []
    clipped = [p for p in net.parameters() if p.requires_grad] if reg.clip_grad else []
    counts_accuracy = task in ACCURACY_TASKS
    n = len(x)
    losses: list[float] = []
    accuracies: list[float] = []
    passed = timed_out = False
    while len(losses) < OVERFIT_MAX_STEPS:
        if time.monotonic() >= deadline:
            timed_out = True
            break
        optimizer.zero_grad(set_to_none=True)
        out = net(x)
        loss = loss_fn(out, y)
        objective = loss + l1_penalty(penalised, reg.l1) if penalised else loss
        objective.backward()
        if clipped:
            clip_gradients(clipped, reg.clip_grad.by, reg.clip_grad.max)
        optimizer.step()
        losses.append(loss.item())
        if counts_accuracy:
            accuracies.append(
                float(count_correct(batch_predictions(out.detach(), task), y, task)) / n)
        if not math.isfinite(losses[-1]):
            break
        if len(losses) >= OVERFIT_WINDOW and _fits(losses, accuracies):
            passed = True
            break
    return _overfit_result(spec, net, x, y, task, losses, accuracies, passed, timed_out)


def _window(values: list[float]) -> float:
    tail = values[-OVERFIT_WINDOW:]
    return sum(tail) / len(tail)


def _fits(losses: list[float], accuracies: list[float]) -> bool:
    if accuracies and _window(accuracies) >= OVERFIT_ACCURACY:
        return True
    return losses[0] > 0 and _window(losses) <= OVERFIT_LOSS_SHARE * losses[0]


def _overfit_result(spec: JobSpec, net: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    task: str, losses: list[float], accuracies: list[float], passed: bool,
                    timed_out: bool) -> CheckResult:
    name, n, steps = "overfit_small_batch", len(x), len(losses)
    if not losses:
        return CheckResult(name, "skipped", "the time budget was spent before its first step")
    first, last = losses[0], _window(losses)
    data = {"steps": steps, "samples": n, "first_loss": first, "last_loss": last,
            "loss_share": last / first if first > 0 and math.isfinite(last) else 1.0}
    told = f"after {steps} steps on {n} training samples, the loss is {last:.4g} (from {first:.4g}"
    told += f", {data['loss_share']:.1%} of it; near zero is below 5%)"
    if accuracies:
        data["accuracy"] = _window(accuracies)
        told += f" and the training-mode accuracy {data['accuracy']:.0%} (needs 95%"
        if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in net.modules()):
            data["eval_accuracy"] = _eval_accuracy(net, x, y, task)
            told += f"; {data['eval_accuracy']:.0%} in evaluation mode, dropout off"
        told += ")"
    if not math.isfinite(losses[-1]):
        told = f"the loss became {losses[-1]} at step {steps} of fitting {n} training samples"
    elif passed:
        return CheckResult(name, "pass", told, data=data)
    elif timed_out:
        return CheckResult(name, "warn", f"stopped by the time budget: {told}; raise "
                           "preflight.time_budget_s to let it run its 300 steps", data=data)
    lr = spec.optimizer.lr
    return CheckResult(name, "fail", told, data=data,
                       finding=_finding("cannot_overfit_small_batch", told, data,
                                        overfit_actions(spec, lr, data)))


def _eval_accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str) -> float:
    net.eval()
    with torch.no_grad():
        out = net(x)
    return float(count_correct(batch_predictions(out, task), y, task)) / len(x)


def _finding(name: str, evidence: str, data: dict[str, float],
             actions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "severity": "warning", "since_step": 0, "evidence": evidence,
            "data": finite(data),
            "actions": actions}
