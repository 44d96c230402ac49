"""`optimizer`: torch's optimizers; field names are torch's keyword arguments."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, ValidationInfo, field_validator

from models.strict import StrictModel

LearningRate = Annotated[float, Field(gt=0.0, le=10.0, description="learning rate, > 0")]
WeightDecay = Annotated[float, Field(ge=0.0, le=1.0, description="weight decay, >= 0")]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]
Eps = Annotated[float, Field(gt=0.0, le=1.0, description="added for numerical stability")]
ExcludeFromWeightDecay = Annotated[
    list[Literal["bias", "norm"]],
    Field(
        default_factory=list,
        max_length=2,
        description="bias: parameters named *bias; norm: normalisation layers' parameters. "
        "These get weight_decay 0.",
    ),
]


class SGDSpec(StrictModel):
    type: Literal["sgd"]
    lr: LearningRate = 0.01
    momentum: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of the previous update kept in the next; 0: none"
    )
    dampening: float = Field(
        0.0, ge=0.0, le=1.0, description="share of the new gradient held back from the momentum"
    )
    weight_decay: WeightDecay = 0.0
    nesterov: StrictBool = Field(
        False, description="Nesterov momentum: needs momentum > 0 and dampening 0"
    )
    exclude_from_weight_decay: ExcludeFromWeightDecay

    @field_validator("nesterov")
    @classmethod
    def _nesterov_applies(cls, value: bool, info: ValidationInfo) -> bool:
        # torch.optim.SGD raises for these at construction; say it here, naming the field.
        if not value:
            return value
        if info.data.get("momentum", 1.0) == 0:
            raise ValueError("nesterov needs momentum > 0; set optimizer.momentum or remove it")
        if info.data.get("dampening", 0.0) != 0:
            raise ValueError("nesterov needs dampening 0; set optimizer.dampening to 0")
        return value


class _AdamFamily(StrictModel):
    """Adam and its variants share their hyperparameters; only defaults differ."""

    lr: LearningRate = 0.001
    betas: tuple[Beta, Beta] = Field(
        (0.9, 0.999),
        description="decay rates of the running means of the gradient and of its square",
    )
    eps: Eps = 1e-8
    weight_decay: WeightDecay = Field(0.0, description="an L2 penalty added to the gradient")
    exclude_from_weight_decay: ExcludeFromWeightDecay


class AdamSpec(_AdamFamily):
    type: Literal["adam"]


class AdamWSpec(_AdamFamily):
    type: Literal["adamw"]
    weight_decay: WeightDecay = Field(0.01, description="decoupled from the gradient")


class NAdamSpec(_AdamFamily):
    type: Literal["nadam"]
    lr: LearningRate = 0.002


class RAdamSpec(_AdamFamily):
    type: Literal["radam"]


class AdagradSpec(StrictModel):
    type: Literal["adagrad"]
    lr: LearningRate = 0.01
    lr_decay: float = Field(
        0.0, ge=0.0, le=1.0, description="the rate is lr / (1 + (t - 1) * lr_decay) at step t"
    )
    weight_decay: WeightDecay = 0.0
    initial_accumulator_value: float = Field(
        0.0, ge=0.0, le=1e6, description="starting value of the sum of squared gradients"
    )
    eps: Eps = 1e-10
    exclude_from_weight_decay: ExcludeFromWeightDecay


class AdadeltaSpec(StrictModel):
    type: Literal["adadelta"]
    lr: LearningRate = 1.0
    rho: float = Field(
        0.9, ge=0.0, lt=1.0, description="decay of the running means of squared gradients "
        "and squared updates"
    )
    eps: Eps = 1e-6
    weight_decay: WeightDecay = 0.0
    exclude_from_weight_decay: ExcludeFromWeightDecay


class RMSpropSpec(StrictModel):
    type: Literal["rmsprop"]
    lr: LearningRate = 0.01
    alpha: float = Field(0.99, ge=0.0, lt=1.0, description="smoothing of the squared gradient")
    eps: Eps = 1e-8
    weight_decay: WeightDecay = 0.0
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="momentum on the update; 0: none")
    centered: StrictBool = Field(
        False, description="divide by the gradient's estimated variance rather than its "
        "uncentred second moment"
    )
    exclude_from_weight_decay: ExcludeFromWeightDecay


OptimizerSpec = Annotated[
    SGDSpec | AdamSpec | AdamWSpec | NAdamSpec | RAdamSpec | AdagradSpec | AdadeltaSpec
    | RMSpropSpec,
    Field(discriminator="type"),
]
