"""What travels with an exported model, the same in every format: ONNX metadata_props,
the .pt2 file's `traindock.json`, the safetensors header and model.json. A caller reads the
input shape, the class names and what the outputs mean from the file itself."""

from __future__ import annotations

from typing import Any

import torch

from inference.bundle import Bundle

CARD_FORMAT = "traindock.model/1"
INPUT_NAME = "input"


def output_name(task: str) -> str:
    return "values" if task == "regression" else "logits"


def output_meaning(task: str) -> str:
    return {
        "classification": "one logit per class, in class_names order: softmax gives the "
                          "probabilities, argmax the class",
        "multilabel": "one logit per label, in class_names order: sigmoid gives each label's "
                      "probability",
        "regression": "the predicted values",
    }.get(task, "the network's outputs")


def model_card(bundle: Bundle, job_id: str, checkpoint_sha256: str) -> dict[str, Any]:
    """model.json: everything a caller needs beside the graph or the weights."""
    with torch.inference_mode():
        out_shape = list(bundle.module(torch.zeros(1, *bundle.input_shape)).shape[1:])
    return {
        "format": CARD_FORMAT,
        "job_id": job_id,
        "checkpoint": {"step": bundle.step, "sha256": checkpoint_sha256},
        "task": bundle.task,
        "input": {"name": INPUT_NAME, "shape": ["batch", *bundle.input_shape],
                  "dtype": "float32", "raw": True},
        "output": {"name": output_name(bundle.task), "shape": ["batch", *out_shape],
                   "dtype": "float32", "meaning": output_meaning(bundle.task)},
        "preprocessing": bundle.preprocessing,
        "class_names": bundle.class_names,
        "feature_names": bundle.feature_names,
        "metrics": bundle.metrics,
        "spec": bundle.spec,
    }
