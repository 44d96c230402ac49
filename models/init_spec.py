"""Initialiser specs: how weights and biases start (models/init.py applies them). A scheme is
written as a bare name or as an object with its parameters."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from models.strict import StrictModel

# The schemes that may be written as a bare name, short for {"type": name} with defaults.
InitName = Literal[
    "torch_default", "normal", "uniform", "xavier_uniform", "xavier_normal", "he_uniform",
    "he_normal", "orthogonal", "zeros",
]
BiasInitName = Literal["torch_default", "zeros", "normal", "uniform"]



class TorchDefaultInit(StrictModel):
    """PyTorch's own initialisation, left as the layer was constructed."""

    type: Literal["torch_default"]


class ZerosInit(StrictModel):
    type: Literal["zeros"]


class ConstantInit(StrictModel):
    type: Literal["constant"]
    value: float = Field(description="every entry starts at this value")


class NormalInit(StrictModel):
    """Gaussian N(0, std²); the classic small-random start is std 0.01."""

    type: Literal["normal"]
    std: float = Field(0.01, gt=0.0, le=100.0, description="standard deviation; mean is 0")


DEFAULT_UNIFORM_BOUND = 0.05  # Keras' RandomUniform default


class UniformInit(StrictModel):
    """U(a, b); give `bound` for the symmetric U(-bound, bound), or `a` and `b`."""

    type: Literal["uniform"]
    bound: float | None = Field(
        None, gt=0.0, le=100.0,
        description=f"draw from U(-bound, bound); or give a and b; neither: bound "
        f"{DEFAULT_UNIFORM_BOUND}",
    )
    a: float | None = Field(None, ge=-100.0, le=100.0, description="lower end; with b")
    b: float | None = Field(None, ge=-100.0, le=100.0, description="upper end; with a")

    @model_validator(mode="after")
    def _one_range(self) -> UniformInit:
        pair = (self.a is not None, self.b is not None)
        if self.bound is not None and any(pair):
            raise ValueError("give either bound, or a and b, not both; remove one")
        if pair in ((True, False), (False, True)):
            raise ValueError("give both a and b, or bound for U(-bound, bound)")
        if pair == (True, True) and self.a >= self.b:
            raise ValueError(f"a ({self.a}) must be less than b ({self.b}); swap or widen them")
        return self

    @property
    def low_high(self) -> tuple[float, float]:
        if self.a is not None:
            return self.a, self.b
        bound = DEFAULT_UNIFORM_BOUND if self.bound is None else self.bound
        return -bound, bound


XAVIER_GAIN_DESCRIPTION = (
    "null: torch's gain for the activation that follows the layer (sqrt 2 for relu, so that "
    "on a layer as wide as its input the draw is He's); 1: the textbook Glorot & Bengio "
    "(2010) scheme, Var = 2 / (fan_in + fan_out), whatever follows"
)


class XavierUniformInit(StrictModel):
    """Glorot & Bengio (2010): U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""

    type: Literal["xavier_uniform"]
    gain: float | None = Field(None, gt=0.0, le=100.0, description=XAVIER_GAIN_DESCRIPTION)


class XavierNormalInit(StrictModel):
    """Glorot & Bengio (2010): N(0, std²) with std = gain * sqrt(2 / (fan_in + fan_out))."""

    type: Literal["xavier_normal"]
    gain: float | None = Field(None, gt=0.0, le=100.0, description=XAVIER_GAIN_DESCRIPTION)


class HeUniformInit(StrictModel):
    """He et al. (2015), fan-in mode, gain from the activation that follows the layer."""

    type: Literal["he_uniform"]


class HeNormalInit(StrictModel):
    """He et al. (2015), fan-in mode, gain from the activation that follows the layer."""

    type: Literal["he_normal"]


class OrthogonalInit(StrictModel):
    """Saxe et al. (2014): a (semi-)orthogonal matrix over the weight flattened to
    (out, in·kernel), scaled by `gain`."""

    type: Literal["orthogonal"]
    gain: float = Field(1.0, gt=0.0, le=100.0, description="scale of the orthogonal matrix")


def _object_form(value: Any) -> Any:
    """A bare scheme name is short for {"type": name}; anything else must be such an object."""
    if value == "constant":  # the one scheme without a default for its value
        raise ValueError('constant needs a value: write {"type": "constant", "value": 0.1}')
    if isinstance(value, str):
        return {"type": value}
    if value is None or isinstance(value, dict | BaseModel):
        return value
    raise ValueError(
        'give a scheme name such as "he_normal" or an object such as '
        '{"type": "normal", "std": 0.05}'
    )


WeightInit = Annotated[
    TorchDefaultInit | ZerosInit | NormalInit | UniformInit | XavierUniformInit
    | XavierNormalInit | HeUniformInit | HeNormalInit | OrthogonalInit,
    Field(discriminator="type"),
]
# Fan-based and orthogonal schemes need a matrix: a bias vector takes these.
BiasInit = Annotated[
    TorchDefaultInit | ZerosInit | ConstantInit | NormalInit | UniformInit,
    Field(discriminator="type"),
]
# The spec fields: a bare name or an object in, always the object once validated.
InitSpec = Annotated[
    WeightInit, BeforeValidator(_object_form, json_schema_input_type=InitName | WeightInit)
]
BiasInitSpec = Annotated[
    BiasInit, BeforeValidator(_object_form, json_schema_input_type=BiasInitName | BiasInit)
]

INIT_DESCRIPTION = (
    'weight initialisation: a name ("he_normal") or an object ({"type": "normal", "std": 0.05}, '
    '{"type": "uniform", "a": -0.05, "b": 0.05}, {"type": "orthogonal", "gain": 1.0}); '
    "he_* and xavier_* take their gain from the activation that follows the layer; "
    '{"type": "xavier_normal", "gain": 1} is the textbook Xavier, whatever follows'
)
BIAS_INIT_DESCRIPTION = (
    'bias initialisation: "zeros", "torch_default", "normal", or an object such as '
    '{"type": "constant", "value": 0.1} or {"type": "uniform", "bound": 0.01}'
)
