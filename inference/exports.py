"""Export a bundle to a file in one of FORMATS; a layer a format cannot express is named.

Every export goes to a temporary file renamed into place, so that a reader of the cache
(inference/export_cache.py) never sees half a file."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inference.bundle import Bundle
from inference.export_cache import MEDIA_TYPES, SUFFIXES
from inference.export_onnx import export_onnx
from inference.export_pt2 import export_pt2
from inference.export_safetensors import export_safetensors


@dataclass(frozen=True)
class Format:
    suffix: str
    media_type: str
    write: Callable[[Bundle, dict[str, Any], Path], None]


FORMATS: dict[str, Format] = {
    name: Format(SUFFIXES[name], MEDIA_TYPES[name], write)
    for name, write in (("onnx", export_onnx), ("pt2", export_pt2),
                        ("safetensors", export_safetensors))
}


class UnsupportedLayer(Exception):
    """A layer the format cannot express. `field` is its spec path (model.layers[3])."""

    def __init__(self, fmt: str, field: str, kind: str, reason: str) -> None:
        super().__init__(f"{field} ({kind}): cannot be exported to {fmt} ({reason}); export "
                         "another format, or train the job without this layer")
        self.field = field
        self.kind = kind


def export(bundle: Bundle, card: dict[str, Any], fmt: str, path: Path) -> int:
    """Write `bundle` as `fmt` to `path`; returns the file's size."""
    write = FORMATS[fmt].write
    # Hidden, and ending as the final name does (torch.export.save wants a .pt2 name).
    tmp = path.with_name(f".{os.getpid()}.{path.name}")
    try:
        try:
            write(bundle, card, tmp)
        except Exception as exc:
            culprit = failing_layer(bundle, fmt)
            if culprit is None:
                raise
            raise UnsupportedLayer(fmt, *culprit, reason=_first_line(exc)) from exc
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size


def failing_layer(bundle: Bundle, fmt: str) -> tuple[str, str] | None:
    """(spec path, layer type) of the first top-level layer that fails to export alone, on
    the input it gets in the network; None when each exports alone (the failure is not one
    layer's)."""
    layers = bundle.spec.get("model", {}).get("layers", [])
    network = getattr(bundle.module, "network", None)
    sequence = getattr(network, "layers", None)
    if not isinstance(sequence, nn.Sequential) or len(sequence) != len(layers):
        return None
    write = FORMATS[fmt].write
    with torch.inference_mode():
        x = bundle.module.normalize(torch.zeros(2, *bundle.input_shape))
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / (
        f"traindock-layer-{os.getpid()}{FORMATS[fmt].suffix}")
    try:
        for i, (layer, module) in enumerate(zip(layers, sequence, strict=True)):
            alone = Bundle(module=module, input_shape=tuple(x.shape[1:]), task=bundle.task,
                           class_names=None, feature_names=None, step=bundle.step)
            try:
                write(alone, _blank_card(bundle.task), scratch)
            except Exception:
                return f"model.layers[{i}]", str(layer.get("type"))
            with torch.inference_mode():
                x = module(x)
    finally:
        scratch.unlink(missing_ok=True)
    return None


def _blank_card(task: str) -> dict[str, Any]:
    return {"format": "", "job_id": "", "checkpoint": {"step": 0, "sha256": ""}, "task": task,
            "input": {"shape": [], "dtype": "float32"}, "output": {"meaning": ""},
            "class_names": None, "feature_names": None, "preprocessing": {}, "metrics": {},
            "spec": {}}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
