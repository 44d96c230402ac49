"""Bundle -> ONNX, through PyTorch's exporter (torch.export, then onnxscript's translation),
with a dynamic batch dimension and the model card in the file's metadata_props."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import onnx
import torch

from inference.bundle import Bundle
from inference.card import INPUT_NAME, output_name

# The exporter logs a line per torchvision operator it cannot register (torchvision is not
# installed, and not needed: our layers are plain torch).
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


def metadata_props(card: dict[str, Any]) -> dict[str, str]:
    """String -> string, as ONNX stores it: plain strings stay, the rest is JSON."""
    return {
        "traindock.format": card["format"],
        "traindock.job_id": card["job_id"],
        "traindock.step": str(card["checkpoint"]["step"]),
        "traindock.checkpoint_sha256": card["checkpoint"]["sha256"],
        "task": card["task"],
        "input_shape": json.dumps(card["input"]["shape"]),
        "input_dtype": card["input"]["dtype"],
        "output_meaning": card["output"]["meaning"],
        "class_names": json.dumps(card["class_names"]),
        "feature_names": json.dumps(card["feature_names"]),
        "preprocessing": json.dumps(card["preprocessing"]),
        "metrics": json.dumps(card["metrics"]),
        "spec": json.dumps(card["spec"]),
    }


def export_onnx(bundle: Bundle, card: dict[str, Any], path: Path) -> None:
    example = torch.zeros(2, *bundle.input_shape)
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        bundle.module, (example,), input_names=[INPUT_NAME],
        output_names=[output_name(bundle.task)], dynamic_shapes=({0: batch},), dynamo=True,
        verbose=False,
    )
    model = program.model_proto
    for key, value in metadata_props(card).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "traindock"
    onnx.save_model(model, str(path))
