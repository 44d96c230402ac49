"""Bundle -> a zip of two files: `model.safetensors` (every tensor of the bundle's module:
`normalize.shift` and `normalize.scale`, the preprocessing, then `network.<name>` for the
network's parameters and buffers, named as the checkpoint names them) and `model.json` (the
model card). The card is in the safetensors header's metadata too, so that the weights file
alone still says what it holds."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from safetensors.torch import save

from inference.bundle import Bundle

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"


def export_safetensors(bundle: Bundle, card: dict[str, Any], path: Path) -> None:
    tensors = {name: tensor.detach().contiguous().clone()
               for name, tensor in bundle.module.state_dict().items()}
    header = {"format": card["format"], "task": card["task"],
              "input_shape": json.dumps(card["input"]["shape"]),
              "class_names": json.dumps(card["class_names"]),
              "feature_names": json.dumps(card["feature_names"]),
              "traindock": json.dumps(card)}
    weights = save(tensors, metadata=header)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(WEIGHTS_FILE, weights)
        archive.writestr(CARD_FILE, json.dumps(card, indent=2))
