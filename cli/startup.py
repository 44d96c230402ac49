"""`traindock show JOB --startup`: where a job's seconds before its first training step went,
as a table (the API's `startup`, worker/startup.py)."""

from __future__ import annotations

from typing import Any

from cli.format import render_table

# In the order they run; their times add up to total_s.
PHASES = (("interpreter_s", "interpreter"), ("imports_s", "imports"), ("job_s", "job"),
          ("data_s", "data"), ("model_s", "model"), ("optimizer_s", "optimizer"),
          ("resume_s", "resume"), ("preflight_s", "preflight"), ("first_step_s", "first step"))


def format_startup(startup: dict[str, Any] | None) -> str:
    if not startup:
        return "no start-up recorded yet: it is stored once the job's first training step is done"
    kind = "a warm training process" if startup["warm"] else "a new training process"
    rows = [[label, f"{startup[key]:.3f}"] for key, label in PHASES if startup.get(key) is not None]
    rows.append(["total", f"{startup['total_s']:.3f}"])
    lines = [f"start-up of attempt {startup['attempt']}, on {kind}:",
             render_table(["phase", "seconds"], rows, right=[1])]
    if startup.get("queue_s") is not None:
        lines.append(f"queued {startup['queue_s']:.3f} s before (submit to claim)")
    return "\n".join(lines)
