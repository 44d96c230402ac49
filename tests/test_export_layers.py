"""inference/exports.py names the layer a format cannot express: a module whose output
depends on its input's values through Python control flow cannot be traced by torch.export,
and the exporters' 422 names its spec path and type."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from inference.bundle import Bundle, Normalize, Predictor
from inference.card import model_card
from inference.exports import UnsupportedLayer, export
from models.build import Network


class SignFlip(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x  # decided by the data: not traceable


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_the_failing_layer_is_named(fmt: str, tmp_path: Path) -> None:
    network = Network([nn.Flatten(), nn.Linear(4, 3), SignFlip()]).eval()
    bundle = Bundle(module=Predictor(Normalize({}), network).eval(), input_shape=(2, 2),
                    task="classification", class_names=["a", "b", "c"], feature_names=None,
                    step=1, spec={"model": {"layers": [
                        {"type": "flatten"}, {"type": "linear", "out_features": 3},
                        {"type": "sign_flip"}]}})
    with pytest.raises(UnsupportedLayer) as caught:
        export(bundle, model_card(bundle, "job", "sha"), fmt, tmp_path / f"model.{fmt}")
    assert caught.value.field == "model.layers[2]" and caught.value.kind == "sign_flip"
    assert str(caught.value).startswith(f"model.layers[2] (sign_flip): cannot be exported to "
                                        f"{fmt}")
    assert list(tmp_path.iterdir()) == []  # nothing half-written left
