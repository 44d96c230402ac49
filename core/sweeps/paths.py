"""Dotted paths into a spec document: `optimizer.lr`, `model.layers[2].p`, `optimizer`."""

from __future__ import annotations

import copy
import re
from typing import Any

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")


class PathError(ValueError):
    """The path is malformed or names nothing in the base spec."""


def parse_path(path: str) -> list[str | int]:
    """`model.layers[2].p` -> ["model", "layers", 2, "p"]."""
    steps: list[str | int] = []
    for part in path.split("."):
        match = _SEGMENT.fullmatch(part)
        if match is None:
            raise PathError(f"{path!r} is not a spec path; write fields with dots and list "
                            "items with [i], e.g. model.layers[2].p")
        steps.append(match.group(1))
        steps.extend(int(i) for i in _INDEX.findall(match.group(2)))
    return steps


def _walk(document: Any, steps: list[str | int], path: str) -> Any:
    node = document
    for depth, step in enumerate(steps):
        where = _render(steps[:depth]) or "the spec"
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise PathError(f"{path!r}: {where} has {size} items, so [{step}] names "
                                "nothing in the base spec")
        elif not isinstance(node, dict) or step not in node:
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "nothing"
            raise PathError(f"{path!r}: {where} has no field {step!r} in the base spec "
                            f"(it has: {known}); set it in base first to sweep over it")
        node = node[step]
    return node


def _render(steps: list[str | int]) -> str:
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def get_path(document: Any, path: str) -> Any:
    return _walk(document, parse_path(path), path)


def set_path(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `document` with `value` at `path`; the path must exist in it."""
    steps = parse_path(path)
    out = copy.deepcopy(document)
    _walk(out, steps, path)  # the whole path must name something, not only its parent
    parent = _walk(out, steps[:-1], path)
    parent[steps[-1]] = copy.deepcopy(value)
    return out
