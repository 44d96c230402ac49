"""A trial's job spec: the base with the trial's values at their paths, and its seed."""

from __future__ import annotations

from typing import Any

from core.sweeps.paths import parse_path, set_path


def trial_name(sweep_name: str, number: int, repeat: int, repeats: int) -> str:
    return f"{sweep_name}-t{number}" + (f"-r{repeat}" if repeats > 1 else "")


def trial_document(base: dict[str, Any], params: dict[str, Any], repeat: int,
                   name: str) -> dict[str, Any]:
    """Whole objects first (`optimizer`), then the fields inside them (`optimizer.lr`), so
    that a nested value is not overwritten by its parent's choice. Repeat i trains with the
    seed the spec ends with, plus i."""
    document = base
    for path in sorted(params, key=lambda p: len(parse_path(p))):
        document = set_path(document, path, params[path])
    if document is base:
        document = {**base, "training": dict(base["training"])}
    document["training"]["seed"] = document["training"]["seed"] + repeat
    document["name"] = name
    return document
