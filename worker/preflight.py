"""The preflight: checks on copies of the network before the first step (spec `preflight`,
on by default), within a time budget. The report goes to summary["preflight"]:

    {"verdict": "pass" | "warn" | "fail", "seconds": 0.41, "time_budget_s": 10.0,
     "checks": [{"name", "verdict", "evidence", "seconds", "data"}, ...],
     "findings": [<diagnosis-contract findings: suspicious_initial_loss, ...>]}

The run itself is the run without a preflight: the checks train copies, the samples are
drawn with their own generator, and torch's global RNG (dropout's) is forked around them,
so the job's weights after training are bit for bit those of a job with preflight off.

`"gradcheck": true`, the older switch, still runs the gradient check (whatever the budget,
and with preflight off too), keeps its full report in summary.gradcheck and fails the job on
a 'wrong' verdict, as it always has.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.jobspec import JobSpec
from models.gradcheck import GradcheckReport
from worker.data import TrainData
from worker.preflight_checks import (
    GRADCHECK_SAMPLES,
    INITIAL_LOSS_SAMPLES,
    OVERFIT_SAMPLES,
    PREFLIGHT_COORDINATES,
    CheckResult,
    gradcheck_cost_s,
    gradient_check,
    initial_loss,
    overfit_small_batch,
)

VERDICT_ORDER = ("skipped", "pass", "warn", "fail")

log = logging.getLogger(__name__)


class PreflightFailed(RuntimeError):
    """A check failed and the spec's preflight.stop_on_fail asks to stop."""


@dataclass
class Preflight:
    report: dict[str, Any] | None  # summary["preflight"]; None when preflight is off
    gradcheck: GradcheckReport | None  # the gradient check's full report, when it ran

    def failed_check(self) -> dict[str, Any] | None:
        if self.report is None:
            return None
        return next((c for c in self.report["checks"] if c["verdict"] == "fail"), None)


def sample_rows(n: int, k: int, seed: int) -> torch.Tensor:
    """k of the n training rows, drawn with a generator of their own: the samples do not
    depend on the global RNG and take nothing from it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:min(n, k)]


def run_preflight(spec: JobSpec, model: nn.Module, loss_fn: nn.Module, data: TrainData,
                  device: torch.device) -> Preflight:
    settings = spec.preflight
    names = list(settings.checks) if settings.enabled else []
    if not names and not spec.gradcheck:
        return Preflight(None, None)
    started = time.monotonic()
    deadline = started + settings.time_budget_s
    seed = spec.training.seed
    cuda = [device.index if device.index is not None else torch.cuda.current_device()
            ] if device.type == "cuda" else []
    results: list[CheckResult] = []
    full_gradcheck = None
    with torch.random.fork_rng(devices=cuda), _one_thread_on_cpu(device):
        # Seeded here so that dropout draws the same masks in the checks from run to run.
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed(seed)
        # At most 4 batches' worth: a forward without gradients of that many fits wherever
        # the job's own steps do.
        wanted = min(INITIAL_LOSS_SAMPLES, 4 * spec.training.batch_size)
        rows = sample_rows(len(data.x_train), max(wanted, OVERFIT_SAMPLES), seed
                           ).to(data.y_train.device)
        x, y = data.x_train[rows], data.y_train[rows]
        if spec.gradcheck and "gradcheck" not in names:
            names.append("gradcheck")  # for summary.gradcheck alone
        for at, name in enumerate(names):
            began = time.monotonic()
            left = deadline - began
            try:
                if name == "initial_loss":
                    result = initial_loss(spec, model, loss_fn, x, y, data.task)
                elif name == "gradcheck":
                    result, full_gradcheck = _gradient_check(
                        spec, model, loss_fn, data, left, "overfit_small_batch" in names[at:])
                else:
                    result = overfit_small_batch(spec, model, loss_fn, x[:OVERFIT_SAMPLES],
                                                 y[:OVERFIT_SAMPLES], data.task, deadline)
            except Exception as exc:
                # A check that cannot run (out of memory for its copy of the network, say)
                # says so and leaves the job to train; "gradcheck": true fails as it always has.
                if name == "gradcheck" and spec.gradcheck:
                    raise
                log.warning("preflight %s could not run: %s", name, exc)
                result = CheckResult(name, "skipped", f"could not run: {_first_line(exc)}")
            result.seconds = time.monotonic() - began
            if name in settings.checks and settings.enabled:
                results.append(result)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the copies' memory, back for the job's own steps
    if not results:
        return Preflight(None, full_gradcheck)
    return Preflight(_report(results, time.monotonic() - started, settings.time_budget_s,
                             settings.stop_on_fail), full_gradcheck)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def _one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Hundreds of steps on 16 samples: on the CPU, waking torch's thread pool for each
    operation costs more than it saves, and on a busy machine many times more (measured on
    2 shared cores: 300 steps of digits-mlp in 0.4 s on one thread, 239 steps in 10 s on
    two)."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _gradient_check(spec: JobSpec, model: nn.Module, loss_fn: nn.Module, data: TrainData,
                    left_s: float, overfit_follows: bool
                    ) -> tuple[CheckResult, GradcheckReport | None]:
    """On the first GRADCHECK_SAMPLES training samples, as `"gradcheck": true` always was,
    at PREFLIGHT_COORDINATES entries per tensor. Within the budget it may take half of what
    is left when the overfit check follows, all of it otherwise. `"gradcheck": true` asks
    for the full check (models/gradcheck.py's 30 entries per tensor) whatever it costs."""
    n = min(GRADCHECK_SAMPLES, len(data.x_train))
    x, y = data.x_train[:n], data.y_train[:n]
    allowed = left_s / 2 if overfit_follows else left_s
    if spec.gradcheck:
        return gradient_check(model, loss_fn, x, y, spec.training.seed, eps=spec.gradcheck_eps)
    cost = gradcheck_cost_s(model, x, PREFLIGHT_COORDINATES)
    if cost > allowed:
        return CheckResult(
            "gradcheck", "skipped",
            f"would take about {cost:.1f} s, over the {allowed:.1f} s of the time budget it "
            "may take; raise preflight.time_budget_s, or run POST /v1/gradcheck",
            data={"estimated_s": cost}), None
    return gradient_check(model, loss_fn, x, y, spec.training.seed, PREFLIGHT_COORDINATES,
                          eps=spec.gradcheck_eps)


def _report(results: list[CheckResult], seconds: float, budget_s: float,
            stop_on_fail: bool) -> dict[str, Any]:
    verdict = max((r.verdict for r in results), key=VERDICT_ORDER.index)
    findings = []
    for result in results:
        if result.finding is None:
            continue
        finding = dict(result.finding)
        if stop_on_fail and result.verdict == "fail":
            finding["severity"] = "error"  # the job fails because of it
        findings.append(finding)
    # The worst verdict, a skipped check counting least: "skipped" only when all were.
    return {"verdict": verdict,
            "seconds": round(seconds, 4), "time_budget_s": budget_s,
            "checks": [r.as_dict() for r in results], "findings": findings}


def failure_message(check: dict[str, Any]) -> str:
    return (f"preflight check {check['name']} failed: {check['evidence']}; see "
            "summary.preflight, or set preflight.stop_on_fail to false to train anyway")
