"""What tells jobs of one name apart: a short digest of the spec, and the spec fields whose
values differ between them. Computed from the stored spec when a list is read, so a list of
N jobs costs N hashes of a few kilobytes and no query."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

DIGEST_CHARS = 8


def spec_digest(spec: dict[str, Any]) -> str:
    """The first 8 hex digits of the SHA-256 of the spec without its name: two jobs with the
    same digest were asked for the same training, whatever they are called."""
    unnamed = {key: value for key, value in spec.items() if key != "name"}
    text = json.dumps(unnamed, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def flatten(value: Any, path: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}, "model": {"layers": [{...}]}} -> {"optimizer.lr": 0.1,
    "model.layers[0].type": ...}: the paths a job list's `differs` names (the compare page
    names layers by type and rank instead: core/compare_labels.py)."""
    out = {} if out is None else out
    if isinstance(value, list):
        if not value:
            out[path] = []
        for i, item in enumerate(value):
            flatten(item, f"{path}[{i}]", out)
    elif isinstance(value, dict):
        if not value and path:
            out[path] = {}
        for key, item in value.items():
            flatten(item, f"{path}.{key}" if path else key, out)
    else:
        out[path] = value
    return out


def tell_apart(jobs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """For each (job name, spec): its spec digest, and its values of the spec fields that are
    not the same in every job of that name among `jobs`, in the order the fields first appear
    ({} for a name seen once, or for specs that differ in nothing but their name)."""
    digests = [spec_digest(spec) for _, spec in jobs]
    by_name: dict[str, list[int]] = defaultdict(list)
    for i, (name, _) in enumerate(jobs):
        by_name[name].append(i)
    differs: list[dict[str, Any]] = [{} for _ in jobs]
    for members in by_name.values():
        if len({digests[i] for i in members}) < 2:
            continue  # alone, or the same spec: nothing to tell apart
        flats = {i: flatten({k: v for k, v in jobs[i][1].items() if k != "name"})
                 for i in members}
        paths = list(dict.fromkeys(path for flat in flats.values() for path in flat))
        varying = [p for p in paths
                   if len({_comparable(flat.get(p, _UNSET)) for flat in flats.values()}) > 1]
        for i in members:
            differs[i] = {p: flats[i].get(p) for p in varying}
    return list(zip(digests, differs, strict=True))


_UNSET = object()


def _comparable(leaf: Any) -> tuple[str, Any]:
    """A leaf as a set member: 1, 1.0 and true are different values in a spec; an empty list
    or object is a value too."""
    if isinstance(leaf, list | dict):
        return type(leaf).__name__, ""
    return type(leaf).__name__, leaf
