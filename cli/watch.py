"""`traindock watch JOB`: a live progress line on stderr while the job runs, with the
diagnosis's findings printed above it whenever they change, then a summary of the job on
stdout, the findings first. It polls `GET /v1/jobs/{id}` about once a second: the server updates
progress at that pace, and polling survives an API restart without any bookkeeping."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import deque
from typing import Any, TextIO

from cli.findings import diagnosis_block, findings_key
from cli.format import format_duration, format_value, render_table, seconds_between
from cli.http import EXIT_UNREACHABLE, error_messages
from cli.jobref import resolve_job
from traindock.errors import TraindockError
from traindock.transport import Transport

FINAL_STATES = {"succeeded", "failed", "cancelled", "pruned"}  # core.tables.FINAL_STATES
POLL_S = 1.0
GIVE_UP_S = 60.0  # how long the API may stay away before watching stops
RATE_WINDOW_S = 30.0
BAR_WIDTH = 16
EXIT_INTERRUPTED = 130


class StepRate:
    """Steps per second over the last RATE_WINDOW_S seconds of this attempt, as watched."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque()
        self.attempt: int | None = None

    def add(self, job: dict[str, Any], now: float) -> None:
        step = job["progress"].get("step", 0)
        if job["attempt"] != self.attempt or (self.samples and step < self.samples[-1][1]):
            self.samples.clear()
            self.attempt = job["attempt"]
        if job["state"] != "running" or "epochs" not in job["progress"]:
            return  # the data loading before the first step would drag the rate down
        self.samples.append((now, step))
        while len(self.samples) > 2 and now - self.samples[0][0] > RATE_WINDOW_S:
            self.samples.popleft()

    def per_second(self) -> float | None:
        if len(self.samples) >= 2:
            (t0, s0), (t1, s1) = self.samples[0], self.samples[-1]
            if s1 > s0 and t1 - t0 >= 2:
                return (s1 - s0) / (t1 - t0)
        # not the attempt's average since started_at: that counts the data loading and a
        # resumed attempt's steps from before, and would promise too early or too late
        return None

    def eta_s(self, job: dict[str, Any]) -> float | None:
        progress = job["progress"]
        total, step = progress.get("total_steps"), progress.get("step", 0)
        if total and step >= total:
            return 0.0  # training is done; the test set and the last checkpoint remain
        rate = self.per_second()
        if not rate or not total:
            return None
        return (total - step) / rate


def elapsed_s(job: dict[str, Any]) -> float | None:
    """Time running (or queued, before a worker took it); the whole run once it has ended."""
    if job["state"] in FINAL_STATES:
        return seconds_between(job.get("started_at") or job["created_at"], job["finished_at"])
    if job["state"] == "running":
        return seconds_between(job.get("started_at"))
    return seconds_between(job["created_at"])


def progress_parts(job: dict[str, Any], eta_s: float | None) -> list[tuple[int, str]]:
    """The pieces of the progress line, each with its rank: 0 is shown always, the highest
    rank is the first dropped when the terminal is narrow."""
    progress, latest = job["progress"], (job.get("summary") or {}).get("latest", {})
    state = job["state"]
    if state == "running" and job.get("cancel_requested"):
        state = "cancelling"
    parts = [(0, f"{state:<9}")]
    if job["state"] == "queued":
        parts.append((0, "waiting for a worker"))
        if job.get("error"):
            parts.append((6, f"(attempt {job['attempt']} ended: {job['error']})"))
    elif "epochs" not in progress:  # claimed; the worker is loading the data
        parts.append((0, "starting"))
    else:
        step, total = progress.get("step", 0), progress.get("total_steps")
        fraction = min(1.0, step / total) if total else 0.0
        filled = int(round(fraction * BAR_WIDTH))
        parts += [
            (0, f"epoch {progress.get('epoch', 0)}/{progress['epochs']}"),
            (1, f"step {step}/{total or '?'}"),
            (3, f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}]"),
            (0, f"{fraction:4.0%}"),
        ]
        for rank, name in ((4, "train_loss"), (5, "val_loss"), (2, "val_accuracy"),
                           (2, "val_rmse")):
            if name in latest:
                parts.append((rank, f"{name} {format_value(latest[name])}"))
    parts.append((4, f"elapsed {format_duration(elapsed_s(job))}"))
    if job["state"] == "running":
        parts.append((1, f"ETA {format_duration(eta_s)}"))
    return parts


def progress_line(job: dict[str, Any], eta_s: float | None, width: int | None = None) -> str:
    """running    epoch 2/3  step 42/63  [#############-------]  67%  train_loss 0.2633 ...
    dropping the least useful pieces until it fits in `width` characters."""
    parts = progress_parts(job, eta_s)
    while width is not None and len(parts) > 1 and len("  ".join(t for _, t in parts)) > width:
        drop = max(range(len(parts)), key=lambda i: (parts[i][0], i))
        if parts[drop][0] == 0:
            break
        del parts[drop]
    return "  ".join(text for _, text in parts)[:width]


class StatusLine:
    """One line redrawn in place on a terminal; elsewhere (a log, a pipe) a new line each
    time `key` changes, so that a log gets one line per epoch and not one per second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.key: object = None
        self.drawn = False

    def width(self) -> int | None:
        """The room on the terminal (a wrapped line could not be redrawn); None elsewhere."""
        return shutil.get_terminal_size().columns - 1 if self.tty else None

    def show(self, text: str, key: object) -> None:
        if self.tty:
            self.stream.write(f"\r{text[:self.width()]}\x1b[K")
            self.drawn = True
        elif key != self.key:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.key = key

    def print_above(self, text: str) -> None:
        """Lines that stay (the findings), put above the status line, which is drawn again
        at the next `show`."""
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()
        self.key = None

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def follow(api: Transport, job_id: str, out: TextIO, poll_s: float = POLL_S) -> dict[str, Any]:
    """Show the job's progress until it ends; the job as it ended."""
    line, rate = StatusLine(out), StepRate()
    down_since: float | None = None
    shown_findings: tuple = ()
    try:
        while True:
            try:
                job = api.get(f"/v1/jobs/{job_id}")
            except TraindockError as exc:
                messages, exit_code = error_messages(exc, api.url)
                if exit_code != EXIT_UNREACHABLE:
                    raise
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > GIVE_UP_S:
                    raise
                line.show(f"{messages[0]}; trying again", key="down")
                time.sleep(poll_s)
                continue
            down_since = None
            rate.add(job, time.monotonic())
            # The summary puts the final findings first; while it runs, they go above the line
            if job["state"] not in FINAL_STATES and findings_key(job) != shown_findings:
                shown_findings = findings_key(job)
                step = (job.get("diagnosis") or {}).get("step", 0)
                line.print_above(diagnosis_block(job) if shown_findings
                                 else f"diagnosis  no findings now (at step {step})")
            key = (job["state"], job["attempt"], job["progress"].get("epoch"))
            line.show(progress_line(job, rate.eta_s(job), line.width()), key)
            if job["state"] in FINAL_STATES:
                return job
            time.sleep(poll_s)
    finally:
        line.close()


def attempts_text(job: dict[str, Any]) -> str:
    """Attempts spent against the budget: `attempt` also counts the runs a worker's shutdown
    stopped (`preemptions`), which spend none (docs/reliability.md)."""
    preemptions = job.get("preemptions") or 0
    text = f"attempt {job['attempt'] - preemptions}"
    if "max_attempts" in job:
        text += f" of {job['max_attempts']}"
    if preemptions:
        text += f" ({preemptions} preemption{'s' if preemptions > 1 else ''})"
    return text


def summary_block(job: dict[str, Any]) -> str:
    """The diagnosis's findings first; then state, attempts, the latest and best value of
    every epoch metric, the test metrics last, and the error of a job that did not succeed."""
    summary = job.get("summary") or {}
    latest, best, test = (summary.get(k) or {} for k in ("latest", "best", "test"))
    progress = job["progress"]
    attempts = attempts_text(job)
    diagnosis = diagnosis_block(job)
    lines = [diagnosis, ""] if diagnosis else []
    lines += [
        f"job       {job['id']}  {job['name']}",
        f"state     {job['state']}  {attempts}  took {format_duration(elapsed_s(job))}",
        f"progress  epoch {progress.get('epoch', 0)}/{progress.get('epochs', '?')}  "
        f"step {progress.get('step', 0)}/{progress.get('total_steps', '?')}",
    ]
    # Per-layer statistics (grad_norm/layers.0, ...) would bury the scores: they are counted
    # here and read with `traindock metrics JOB --names ...`.
    names = sorted((n for n in latest if "/" not in n), key=lambda n: (n not in best, n))
    per_layer = len([n for n in latest if "/" in n and not n.startswith("lr_find/")])
    if names:
        rows = [[n, format_value(latest[n]),
                 format_value(best[n]["value"]) if n in best else "",
                 str(best[n]["epoch"]) if n in best else ""] for n in names]
        lines += ["", render_table(["metric", "latest", "best", "best at epoch"], rows,
                                   right=(1, 2, 3))]
    if per_layer:
        lines.append(f"({per_layer} per-layer statistics: traindock metrics "
                     f"{job['id'][:8]} lists them)")
    if test:
        lines += ["", render_table(["test metric", "value"],
                                   [[n, format_value(v)] for n, v in sorted(test.items())],
                                   right=(1,))]
    if summary.get("lr_find"):
        lines += ["", lr_find_line(summary["lr_find"])]
    for note in summary.get("notes") or []:
        lines += ["", f"note      {note}"]
    if job.get("error"):
        # A pruned job's `error` is its sweep's pruner's reason: no failure.
        label = "pruned   " if job["state"] == "pruned" else "error    "
        lines += ["", f"{label} {job['error']}"]
    return "\n".join(lines)


def lr_find_line(report: dict[str, Any]) -> str:
    """A range test's suggestion, its rule and the other rules' rates (docs/lr_find.md)."""
    if report.get("suggested_lr") is None:
        return f"lr_find   no suggestion: {report.get('note', 'too few points')}"
    others = "  ".join(f"{rule} {rate:.2e}" for rule, rate in report["suggestions"].items()
                       if rule != report["rule"] and rate is not None)
    return (f"lr_find   suggested {report['suggested_lr']:.2e} ({report['rule']}); {others}; "
            f"{report['points']} points, {report['stopped']}")


def watch_to_end(api: Transport, job_id: str) -> int:
    """Follow the job, print its summary; 0 if it succeeded, 1 if not, 130 on Ctrl-C."""
    try:
        job = follow(api, job_id, sys.stderr)
    except KeyboardInterrupt:
        short = job_id[:8]
        print(f"stopped watching; the job goes on. `traindock cancel {short}` cancels it, "
              f"`traindock watch {short}` watches it again.", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary_block(job))
    return 0 if job["state"] == "succeeded" else 1


def run_watch(api: Transport, args: argparse.Namespace) -> int:
    return watch_to_end(api, resolve_job(api, args.job))
