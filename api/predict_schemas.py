"""The documented shapes of POST /v1/jobs/{id}/predict and GET /v1/jobs/{id}/predict. The
route answers with JSONResponse directly (no response validation on the hot path); these
models are what the OpenAPI document shows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class PredictionOut(BaseModel):
    """One row's answer. Classification: `class` (its name), `index`, and `probabilities` by
    class name. Multi-label: `labels` (those at probability >= 0.5) and `probabilities`.
    Regression: `values`, one per output."""

    class_: str | None = Field(None, alias="class")
    index: int | None = None
    labels: list[str] | None = None
    probabilities: dict[str, float] | None = None
    values: list[float] | None = None


class PredictCheckpointOut(BaseModel):
    """The checkpoint that answered; `cached`: its model was already loaded."""

    id: int
    step: int
    epoch: int
    sha256: str
    cached: bool


class PredictOut(BaseModel):
    predictions: list[PredictionOut]
    task: str
    checkpoint: PredictCheckpointOut


class PredictInputsOut(BaseModel):
    """What POST takes for this job: `input` says how the dashboard asks for it (`image`: draw
    or drop an image; `table`: one number per feature name; `array`: raw arrays).
    `image_value_max`: the value of a white pixel in the training data (digits: 16)."""

    task: str
    input: Literal["image", "table", "array"]
    input_shape: list[int]
    feature_names: list[str] | None
    class_names: list[str] | None
    image_value_max: float | None
    has_checkpoint: bool


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "inputs": {"type": "array", "items": {"type": "array", "items": {}},
                                   "description": "rows, each flat or in the input shape"},
                        "rows": {"type": "array", "items": {"type": "object"},
                                 "description": "objects of feature name to number"},
                    },
                },
                "examples": {"arrays": {"value": {"inputs": [[0.0] * 64]}},
                             "rows": {"value": {"rows": [{"x0": 0.5, "x1": -1.2}]}}},
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "array",
                                            "items": {"type": "string", "format": "binary"},
                                            "description": "a .csv with a header, an .npz "
                                            "with an x array, or .png/.jpg images"}},
                },
            },
        },
    },
}
