"""What tells compared jobs apart, said the way a person reads a network: layers are matched
by type and rank ("dropout p=0.5", "linear#2 out=128"), not by list index, so inserting a layer
does not make every later layer "differ"; when the jobs' layer type sequences are not the
same, their architectures differ: each job is labelled by its name and its architecture is
one compact line ("flatten → linear 128 → relu ×2 → linear 10"), never a column per field.
The dashboard's compare page shows these labels (GET /v1/compare); it computes none.

Also each job's best, final and test values of every scored metric, and which job leads each
one (the best value respects the metric's direction: min for losses, max for accuracies)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core.spec_digest import flatten
from core.specs.metrics import better_direction

MAX_LABEL_FIELDS = 3
SHORT_FIELDS = {"out_features": "out", "out_channels": "out", "kernel_size": "kernel",
                "num_heads": "heads", "embedding_dim": "dim", "hidden_size": "hidden"}
SIZE_FIELDS = ("out_features", "out_channels", "hidden_size", "embedding_dim", "p")
MODES = ("best", "final", "test")
ARROW = " → "


@dataclass
class ComparedJob:
    id: str
    name: str
    spec: dict[str, Any]
    summary: dict[str, Any] | None = None


@dataclass
class Comparison:
    architectures_differ: bool
    fields: list[str]  # what differs, in the order it first appears: "optimizer.lr"
    labels: list[str]  # one per job, in the order given
    differs: list[dict[str, Any]]  # one per job: field -> this job's value
    architectures: list[str]  # one per job: its layers in one line
    values: list[dict[str, dict[str, float]]]  # one per job: mode -> metric -> value
    metrics: dict[str, list[str]] = field(default_factory=dict)  # mode -> metrics shown
    directions: dict[str, str] = field(default_factory=dict)  # metric -> min | max
    leaders: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # mode -> metric -> ids


def _layers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    layers = (spec.get("model") or {}).get("layers") or []
    return [layer for layer in layers if isinstance(layer, dict)]


def _layer_keys(types: list[str]) -> list[str]:
    """"linear" when the network has one linear layer; "linear#1", "linear#2" when it has
    several: the rank among the layers of its type, counted from 1."""
    totals = Counter(types)
    seen: Counter[str] = Counter()
    keys = []
    for kind in types:
        seen[kind] += 1
        keys.append(f"{kind}#{seen[kind]}" if totals[kind] > 1 else kind)
    return keys


def _by_field(spec: dict[str, Any], with_layers: bool) -> dict[str, Any]:
    """The spec's leaves keyed by the name a label shows: "optimizer.lr" outside the layers,
    "linear#2 out" inside them (only `with_layers`, when the type sequences agree)."""
    rest = {key: value for key, value in spec.items() if key != "name"}
    model = dict(rest.get("model") or {})
    model.pop("layers", None)
    rest["model"] = model
    out = flatten(rest)
    if with_layers:
        layers = _layers(spec)
        for key, layer in zip(_layer_keys([str(x.get("type")) for x in layers]), layers,
                              strict=True):
            inner = flatten({k: v for k, v in layer.items() if k != "type"})
            for path, value in inner.items():
                out[f"{key} {SHORT_FIELDS.get(path, path)}"] = value
    return out


def architecture(spec: dict[str, Any]) -> str:
    """The layers in one line, each by its type and main size, repeats folded:
    "flatten → linear 128 → relu → dropout 0.2 → linear 10"."""
    parts: list[str] = []
    counts: list[int] = []
    for layer in _layers(spec):
        size = next((layer[f] for f in SIZE_FIELDS if layer.get(f) is not None), None)
        text = str(layer.get("type")) + (f" {_show(size)}" if size is not None else "")
        if parts and parts[-1] == text:
            counts[-1] += 1
        else:
            parts.append(text)
            counts.append(1)
    return ARROW.join(p if n == 1 else f"{p} ×{n}" for p, n in zip(parts, counts, strict=True))


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str | int):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _comparable(value: Any) -> tuple[str, str]:
    return type(value).__name__, _show(value)


def compare(jobs: list[ComparedJob]) -> Comparison:
    """Labels, differing fields, architectures and values of `jobs`, in their order."""
    type_sequences = {tuple(str(x.get("type")) for x in _layers(job.spec)) for job in jobs}
    differ = len(type_sequences) > 1
    flats = [_by_field(job.spec, with_layers=not differ) for job in jobs]
    every = list(dict.fromkeys(path for flat in flats for path in flat))
    fields = [f for f in every if len({_comparable(flat.get(f)) for flat in flats}) > 1]
    differs = [{f: flat.get(f) for f in fields} for flat in flats]
    labels = _labels(jobs, fields, differs, differ)
    values = [_values(job.summary) for job in jobs]
    result = Comparison(differ, fields, labels, differs,
                        [architecture(job.spec) for job in jobs], values)
    _score(result, jobs)
    return result


def _labels(jobs: list[ComparedJob], fields: list[str], differs: list[dict[str, Any]],
            architectures_differ: bool) -> list[str]:
    names = Counter(job.name for job in jobs)
    if architectures_differ or not fields:
        labels = [job.name for job in jobs]
    else:
        more = len(fields) - MAX_LABEL_FIELDS
        labels = [", ".join(f"{f}={_show(d[f])}" for f in fields[:MAX_LABEL_FIELDS])
                  + (f" (+{more} more)" if more > 0 else "") for d in differs]
    # Twins (a repeated name, or the same shown fields): the short id tells them apart.
    repeated = Counter(labels)
    return [f"{label} [{job.id[:8]}]" if repeated[label] > 1 or
            (label == job.name and names[job.name] > 1) else label
            for label, job in zip(labels, jobs, strict=True)]


def _values(summary: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    summary = summary or {}
    best = {name: point.get("value") for name, point in (summary.get("best") or {}).items()
            if isinstance(point, dict)}
    return {"best": _scored(best), "final": _scored(summary.get("latest") or {}),
            "test": _scored(summary.get("test") or {})}


def _scored(values: dict[str, Any]) -> dict[str, float]:
    """The metrics that have a better direction (losses, accuracies), as numbers."""
    return {name: float(value) for name, value in values.items()
            if better_direction(name) and isinstance(value, int | float)}


def _score(result: Comparison, jobs: list[ComparedJob]) -> None:
    """Which metrics each mode shows, their directions, and the job(s) leading each."""
    for mode in MODES:
        names = sorted({name for v in result.values for name in v[mode]})
        result.metrics[mode] = names
        result.leaders[mode] = {}
        for name in names:
            direction = better_direction(name) or "min"
            result.directions[name] = direction
            scored = [(v[mode][name], job.id) for v, job in zip(result.values, jobs, strict=True)
                      if name in v[mode]]
            if len(scored) < 2:
                continue
            top = (min if direction == "min" else max)(value for value, _ in scored)
            result.leaders[mode][name] = [job_id for value, job_id in scored if value == top]
