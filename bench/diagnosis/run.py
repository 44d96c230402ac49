"""The diagnosis benchmark: labelled runs through the service, scored per finding.

Every run in manifest.json is a spec with the findings it must produce (`expect`; empty for a
healthy run) and the ones it may produce beside them without a false alarm (`allow`: a deep
sigmoid net that is stuck at chance may also be called saturated). Each is submitted once per
seed (`training.seed` and `dataset.seed` set to it) through `POST /v1/jobs`; when the job
ends, its diagnosis is read from `GET /v1/jobs/{id}` (the top-level `diagnosis` field of the
contract, else `summary.diagnosis`). The script prints, per finding name, how often it was
expected and detected or missed, how often it was reported where it was neither expected nor
allowed; then the false alarms on healthy runs (a finding of severity warning or error; info
is listed apart), recall and precision over the set, and the published figures beside them.

    python bench/diagnosis/run.py --api http://127.0.0.1:8000      # a running service
    python bench/diagnosis/run.py --stack                          # a private stack
    python bench/diagnosis/run.py --stack --only healthy --seeds 0  # a subset

Recall counts expected findings that were reported, over all expected; precision counts
reported findings (warning or error) that were expected or allowed, over all reported. The
published figures are not from these runs: they are the tools' scores on human-labelled
faults (Humbatova et al., EMSE 2025) and UMLAUT's warnings on healthy models, quoted so that
ours can be read against them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TERMINAL = {"succeeded", "failed", "cancelled", "pruned"}
ALARM_SEVERITIES = {"warning", "error"}
PUBLISHED = [
    ("Humbatova et al. EMSE'25, average of the tools", "recall 0.33, precision 0.21"),
    ("DeepFD (the best tool in that study)", "recall 0.55, precision 0.37"),
    ("UMLAUT re-run on healthy models", "warned on 117 of 117"),
]


@dataclass
class Run:
    spec_path: str
    seed: int
    expect: list[str]
    allow: list[str]
    needs: str | None = None  # a spec field the server may not have yet
    job_id: str | None = None
    state: str | None = None
    error: str | None = None
    findings: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def healthy(self) -> bool:
        return not self.expect

    @property
    def label(self) -> str:
        return f"{self.spec_path} seed {self.seed}"

    def reported(self, severities: set[str] = ALARM_SEVERITIES) -> set[str]:
        return {f["name"] for f in self.findings if f.get("severity") in severities}


def load_runs(manifest: Path, only: str, seeds: list[int] | None) -> list[Run]:
    entries = json.loads(manifest.read_text())["runs"]
    runs = []
    for entry in entries:
        expect = entry.get("expect", [])
        if only == "healthy" and expect or only == "faulty" and not expect:
            continue
        for seed in seeds if seeds is not None else entry["seeds"]:
            runs.append(Run(entry["spec"], seed, expect, entry.get("allow", []),
                            entry.get("needs")))
    return runs


def spec_for(run: Run) -> dict:
    spec = json.loads((ROOT / run.spec_path).read_text())
    spec["name"] = f"{spec.get('name', Path(run.spec_path).stem)}-seed{run.seed}"
    spec.setdefault("training", {})["seed"] = run.seed
    spec["dataset"]["seed"] = run.seed
    return spec


def diagnosis_of(job: dict) -> dict:
    found = job.get("diagnosis") or (job.get("summary") or {}).get("diagnosis") or {}
    return {"final": found.get("final", False), "findings": found.get("findings", [])}


def submit_all(client: httpx.Client, runs: list[Run]) -> None:
    for run in runs:
        response = client.post("/v1/jobs", json=spec_for(run))
        if response.status_code != 201:
            run.state, run.error = "refused", f"{response.status_code} {response.text[:300]}"
            continue
        run.job_id = response.json()["id"]


def wait_all(client: httpx.Client, runs: list[Run], timeout: float, poll: float = 1.0) -> None:
    pending = [run for run in runs if run.job_id]
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        time.sleep(poll)
        for run in list(pending):
            job = client.get(f"/v1/jobs/{run.job_id}").json()
            if job["state"] not in TERMINAL:
                continue
            run.state, run.error = job["state"], job.get("error")
            run.findings = diagnosis_of(job)["findings"]
            if job.get("started_at") and job.get("finished_at"):
                run.seconds = _seconds(job["started_at"], job["finished_at"])
            pending.remove(run)
            print(f"  {run.state:9} {run.seconds:5.1f}s {run.label}: "
                  f"{', '.join(sorted(run.reported())) or '-'}", flush=True)
    for run in pending:
        run.state = "timed out"
        client.post(f"/v1/jobs/{run.job_id}/cancel")


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def score(runs: list[Run]) -> dict:
    """Per finding: expected and detected, expected and missed, reported where neither
    expected nor allowed; and the totals behind recall, precision and the false alarms."""
    per = defaultdict(Counter)
    expected_total = detected_total = reported_total = right_total = 0
    healthy_alarms: list[tuple[Run, set[str]]] = []
    healthy_info: list[tuple[Run, set[str]]] = []
    for run in runs:
        if run.state in ("refused", "timed out"):
            continue
        reported = run.reported()
        for name in run.expect:
            expected_total += 1
            hit = name in reported
            detected_total += hit
            per[name]["detected" if hit else "missed"] += 1
        for name in reported:
            reported_total += 1
            if name in run.expect or name in run.allow:
                right_total += 1
            else:
                per[name]["unexpected"] += 1
        if run.healthy:
            if reported - set(run.allow):
                healthy_alarms.append((run, reported - set(run.allow)))
            info = run.reported({"info"})
            if info:
                healthy_info.append((run, info))
    return {
        "per_finding": per,
        "recall": detected_total / expected_total if expected_total else None,
        "precision": right_total / reported_total if reported_total else None,
        "expected": expected_total, "detected": detected_total,
        "reported": reported_total, "right": right_total,
        "healthy_alarms": healthy_alarms, "healthy_info": healthy_info,
    }


def print_report(runs: list[Run], result: dict, wall: float) -> None:
    print("\nper finding (faulty runs expect it; unexpected: reported where not expected or "
          "allowed)")
    print(f"  {'finding':26} {'detected':>8} {'missed':>7} {'unexpected':>10}")
    for name in sorted(result["per_finding"]):
        counts = result["per_finding"][name]
        print(f"  {name:26} {counts['detected']:8} {counts['missed']:7} "
              f"{counts['unexpected']:10}")
    healthy = [run for run in runs if run.healthy and run.state not in ("refused", "timed out")]
    print(f"\nhealthy runs: {len(healthy)}, with a false alarm (warning or error): "
          f"{len(result['healthy_alarms'])}")
    for run, names in result["healthy_alarms"]:
        print(f"  {run.label}: {', '.join(sorted(names))}")
    for run, names in result["healthy_info"]:
        print(f"  (info only) {run.label}: {', '.join(sorted(names))}")
    problems = [run for run in runs if run.state in ("refused", "timed out")]
    for run in problems:
        needs = f" (needs {run.needs})" if run.needs else ""
        print(f"  NOT SCORED {run.label}{needs}: {run.state} {run.error or ''}")

    def ratio(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    print(f"\nrecall {ratio(result['recall'])} ({result['detected']}/{result['expected']} "
          f"expected findings), precision {ratio(result['precision'])} "
          f"({result['right']}/{result['reported']} reported findings)")
    print("published, for comparison (not these runs):")
    for who, figures in PUBLISHED:
        print(f"  {who}: {figures}")
    finished = [run for run in runs if run.state in TERMINAL]
    states = Counter(run.state for run in runs)
    print(f"\n{len(runs)} runs ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}), "
          f"training time {sum(run.seconds for run in finished):.0f}s, wall time {wall:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--api", help="the service's base URL, e.g. http://127.0.0.1:8000")
    where.add_argument("--stack", action="store_true",
                       help="start a private stack (bench/stack.py: a fresh database, a "
                       "redis-server, the API and one worker) and stop it at the end")
    parser.add_argument("--key", help="an API key (sent as a bearer token), when auth is on")
    parser.add_argument("--manifest", type=Path, default=HERE / "manifest.json")
    parser.add_argument("--only", choices=("all", "healthy", "faulty"), default="all")
    parser.add_argument("--seeds", help="comma-separated seeds for every run, instead of "
                        "the manifest's")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds to wait for the whole set")
    parser.add_argument("--json", type=Path, help="also write every run's findings here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    runs = load_runs(args.manifest, args.only, seeds)
    if args.stack:
        sys.path.insert(0, str(ROOT))
        from bench.stack import Stack

        with Stack() as stack:
            stack.start_api()
            stack.start_worker()
            return bench(stack.api_url or "", None, runs, args)
    return bench(args.api, args.key, runs, args)


def bench(api: str, key: str | None, runs: list[Run], args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    started = time.monotonic()
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        print(f"{len(runs)} runs against {api}", flush=True)
        submit_all(client, runs)
        wait_all(client, runs, args.timeout)
    result = score(runs)
    print_report(runs, result, time.monotonic() - started)
    if args.json:
        args.json.write_text(json.dumps([
            {"spec": run.spec_path, "seed": run.seed, "job_id": run.job_id, "state": run.state,
             "error": run.error, "expect": run.expect, "allow": run.allow,
             "findings": run.findings, "seconds": run.seconds} for run in runs
        ], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
