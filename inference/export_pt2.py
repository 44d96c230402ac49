"""Bundle -> a torch.export program (.pt2) with a dynamic batch dimension. It loads with
`torch.export.load` alone, traindock not installed; the model card is the archive's extra
file `traindock.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from inference.bundle import Bundle

CARD_FILE = "traindock.json"


def export_pt2(bundle: Bundle, card: dict[str, Any], path: Path) -> None:
    example = torch.zeros(2, *bundle.input_shape)
    program = torch.export.export(bundle.module, (example,),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path), extra_files={CARD_FILE: json.dumps(card)})
