"""Turn validation failures into messages that name the field and say what to change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.build import SpecError


def field_path(loc: Sequence[Any], data: Any) -> str:
    """Render a pydantic error location as `model.layers[3].out_features`.

    Discriminated unions add the tag to the location (`model, layers, 3, linear, ...`); it is
    dropped by walking the submitted document alongside the location.
    """
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and -len(node) <= item < len(node) else None
            continue
        if isinstance(node, dict) and item not in node and node.get("type") == item:
            continue  # the union tag
        if isinstance(item, str) and not item.isidentifier():  # a key such as a sweep's path
            parts.append(f'["{item}"]')
        else:
            parts.append(f".{item}" if parts else str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "body"


def _layer(loc: Sequence[Any], data: Any) -> tuple[str, str] | None:
    """`("model.layers[3]", "linear")`, the layer's path and type, when the error sits inside
    a layer."""
    try:
        i = list(loc).index("layers")
        index = loc[i + 1]
        layer = data["model"]["layers"][index]
        kind = layer.get("type")
        return (f"model.layers[{index}]", kind) if kind else None
    except (ValueError, IndexError, KeyError, TypeError, AttributeError):
        return None


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    text = str(error.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        return "unknown field; remove it or check its spelling"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx") or {}
        return f"unknown type {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "needs a 'type' field"
    text = text.removeprefix("Value error, ")
    value = error.get("input")
    scalar = isinstance(value, int | float | str) and not isinstance(value, bool)
    if kind != "value_error" and scalar and len(str(value)) < 60:
        text = f"{text} (got {value!r})"
    return text


def pydantic_details(errors: Sequence[dict[str, Any]], data: Any) -> list[dict[str, str]]:
    """One `{field, message}` per error; the message starts with the field's path."""
    details = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if loc and loc[0] == "body":
            loc = loc[1:]
        path = field_path(loc, data)
        layer = _layer(loc, data)
        message = _message(error)
        prefix = path
        if layer and path.startswith(layer[0]):
            layer_path, kind = layer  # model.layers[3].out_features -> ...[3] (linear).out_features
            rest = path[len(layer_path):].lstrip(".")
            prefix = f"{layer_path} ({kind})" + (f".{rest}" if rest else "")
        details.append({"field": path, "message": f"{prefix}: {message}", "type": error["type"]})
    return details


def spec_error_details(error: SpecError) -> list[dict[str, str]]:
    return [{"field": error.field, "message": str(error), "type": "spec"}]
