"""`traindock sweep`, `sweeps` and `best`: create a sweep and follow its trials as a table,
list sweeps, print the best configuration and its spec. HTTP through traindock.Client."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from cli.client import read_spec
from cli.format import format_duration, format_value, render_table
from traindock.client import Client
from traindock.results import Sweep
from traindock.transport import Transport

POLL_S = 2.0


def _param(value: Any) -> str:
    if isinstance(value, dict):  # a whole object: its type says most
        return str(value.get("type", json.dumps(value, separators=(",", ":"))))
    return value if isinstance(value, str) else format_value(value)


def _objective(trial: dict[str, Any]) -> str:
    """The trial's mean objective; a pruned trial's value where it stopped, `@` its step."""
    if trial["value"] is not None:
        return format_value(trial["value"])
    pruned = trial.get("pruned") or {}
    if isinstance(pruned.get("value"), int | float):
        return f"{format_value(pruned['value'])} @{pruned.get('step')}"
    return "-"


def trials_table(sweep: Sweep) -> str:
    """One row per configuration: its values, state, objective (mean ± std over repeats),
    how many repeats produced it, and the longest of their durations. The best is marked."""
    paths = list((sweep.spec or {}).get("parameters", {}))
    best = (sweep.best or {}).get("trial_number")
    header = ["", "#", *paths, "state", sweep.objective.get("metric", "value"), "±std", "n",
              "ran"]
    rows = []
    for trial in sweep.trials:
        ran = [j["duration_s"] for j in trial["jobs"] if j["duration_s"] is not None]
        rows.append(["*" if trial["number"] == best else "", str(trial["number"]),
                     *(_param(trial["params"].get(p)) for p in paths), trial["state"],
                     _objective(trial),
                     format_value(trial["std"]) if trial["std"] is not None else "",
                     f"{len(trial['values'])}/{len(trial['jobs'])}",
                     format_duration(max(ran)) if ran else ""])
    numeric = set(range(len(paths) + 3, len(header)))
    return render_table(header, rows, right={1, *numeric})


def headline(sweep: Sweep) -> str:
    ended = sum(t["state"] not in ("queued", "running") for t in sweep.trials)
    pruned = sum(t["state"] == "pruned" for t in sweep.trials)
    objective = sweep.objective
    text = (f"sweep {sweep.id[:8]} {sweep.name}: {sweep.state}, {ended}/{sweep.trials_planned} "
            f"trials ended{f' ({pruned} pruned)' if pruned else ''}; {objective.get('mode')} "
            f"{objective.get('metric')} ({objective.get('at')})")
    if sweep.best:
        text += f"; best: trial {sweep.best['trial_number']} = {format_value(sweep.best['value'])}"
    return text


def watch_sweep(client: Client, sweep_id: str) -> int:
    """Redraw the table as it changes (in place on a terminal); exit 0 once it succeeded."""
    shown = ""
    tty = sys.stdout.isatty()
    while True:
        sweep = client.sweep(sweep_id)
        text = f"{headline(sweep)}\n{trials_table(sweep)}"
        if text != shown:
            print(("\x1b[H\x1b[2J" if tty else "") + text + ("" if tty else "\n"), flush=True)
            shown = text
        if sweep.final:
            if sweep.error:
                print(f"error: {sweep.error}", file=sys.stderr)
            return 0 if sweep.state == "succeeded" else 1
        time.sleep(POLL_S)


def run_sweep(api: Transport, args: argparse.Namespace) -> int:
    client = Client(transport=api)
    sweep = client.submit_sweep(read_spec(args.spec))
    print(sweep.id, flush=True)
    return watch_sweep(client, sweep.id) if args.watch else 0


def run_sweeps(api: Transport, args: argparse.Namespace) -> int:
    rows = []
    for sweep in Client(transport=api).sweeps():
        best = sweep.best or {}
        rows.append([sweep.id[:8], sweep.name, sweep.state, sweep.method,
                     f"{sweep.objective.get('mode')} {sweep.objective.get('metric')}",
                     f"{sweep.trials_ended}/{sweep.trials_planned}", str(sweep.repeats),
                     format_value(best["value"]) if best else "-"])
    print(render_table(["id", "name", "state", "method", "objective", "trials", "repeats",
                        "best"], rows, right={5, 6, 7}))
    return 0


def run_best(api: Transport, args: argparse.Namespace) -> int:
    """The best configuration's values, objective and spec; with -o, the spec to a file."""
    sweep = Client(transport=api).sweep(args.sweep)
    if not sweep.best or not sweep.best_spec:
        print(f"sweep {sweep.id[:8]} has no trial with a value of "
              f"{sweep.objective.get('metric')} yet ({sweep.state})", file=sys.stderr)
        return 1
    best = sweep.best
    spread = f" ± {format_value(best['std'])}" if best.get("std") is not None else ""
    print(f"best of sweep {sweep.id[:8]} {sweep.name}: trial {best['trial_number']}, "
          f"{sweep.objective.get('metric')} = {format_value(best['value'])}{spread} over "
          f"{len(best['values'])} seed(s)", file=sys.stderr)
    for path, value in best["params"].items():
        print(f"  {path} = {json.dumps(value)}", file=sys.stderr)
    spec = json.dumps(sweep.best_spec, indent=2)
    if args.output:
        Path(args.output).write_text(spec + "\n")
        print(args.output)
    else:
        print(spec)
    return 0
