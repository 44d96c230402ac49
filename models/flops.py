"""FLOPs per example of one layer, from its module and shapes alone.

The modules are the meta-device ones of the shape pass, so counting allocates nothing: only
attributes and tensor shapes are read. What is counted, for one example's forward pass in
evaluation mode:

- linear: 2·in·out (a multiply-add is 2 FLOPs), plus `out` additions for the bias;
- conv1d / conv2d: 2·(in_channels / groups)·kernel_elements per output element, plus one
  addition per output element for the bias. Stride and dilation enter through the output
  size; positions in the zero padding are counted, as torch.utils.flop_counter counts them;
- maxout: its linear projection to out·pieces as above, plus pieces − 1 comparisons per unit;
  maxout_conv1d/2d likewise: the convolution to out_channels·pieces, plus pieces − 1
  comparisons per output element;
- residual projection: a linear or 1×1 conv without bias, as above; the block's own row counts
  the addition of the shortcut, one per output element;
- batchnorm: 2 per element (at inference the running statistics and the affine scale fold
  into one multiply-add);
- layernorm: 7 per element (mean 1, centring 1, variance 2, normalising 1, scale and shift 2);
  the square root per example is not counted;
- max pooling: kernel_elements − 1 comparisons per output element; average pooling:
  kernel_elements per output element (the additions and a division); global average
  pooling: one per input element;
- activations (relu, sigmoid, tanh, leaky_relu, prelu, elu, selu, gelu, silu, softplus):
  1 per element, a transcendental function counting as one; softmax and log_softmax: 3 per
  element (exponential, sum, division or subtraction);
- flatten, reshape, dropout (the identity at inference) and identity: 0.

torch.utils.flop_counter counts the same for linear and conv, less the bias additions.
"""

from __future__ import annotations

import math

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from models.layers import MAXOUT_CONVS, GlobalAvgPool, Maxout, Reshape, Shape

ELEMENTWISE_ACTIVATIONS = (
    nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU,
    nn.Softplus,
)
FREE = (nn.Flatten, Reshape, nn.Dropout, nn.Identity)
LAYERNORM_FLOPS_PER_ELEMENT = 7
SOFTMAX_FLOPS_PER_ELEMENT = 3


def layer_flops(module: nn.Module, in_shape: Shape, out_shape: Shape) -> int | None:
    """FLOPs for one example through `module` (see the module docstring for what counts);
    None for a module this file does not know, so that a new layer type shows up in the tests
    rather than as a wrong number."""
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    if isinstance(module, Maxout):
        units = module.out_features // module.pieces
        return _affine(module.in_features, module.out_features, module.bias) + units * (
            module.pieces - 1
        )
    if isinstance(module, MAXOUT_CONVS):
        per_output = 2 * math.prod(module.weight.shape[1:])
        convolved = n_out * module.pieces  # before the max over pieces
        bias = convolved if module.bias is not None else 0
        return convolved * per_output + bias + n_out * (module.pieces - 1)
    if isinstance(module, nn.Linear):
        return _affine(module.in_features, module.out_features, module.bias)
    if isinstance(module, _ConvNd):
        per_output = 2 * math.prod(module.weight.shape[1:])  # (in / groups) · kernel elements
        return n_out * per_output + (n_out if module.bias is not None else 0)
    if isinstance(module, _BatchNorm):
        return 2 * n_in
    if isinstance(module, nn.LayerNorm):
        return LAYERNORM_FLOPS_PER_ELEMENT * n_in
    if isinstance(module, nn.MaxPool1d | nn.MaxPool2d):
        return n_out * (_window(module.kernel_size, len(in_shape) - 1) - 1)
    if isinstance(module, nn.AvgPool1d | nn.AvgPool2d):
        return n_out * _window(module.kernel_size, len(in_shape) - 1)
    if isinstance(module, GlobalAvgPool):
        return n_in
    if isinstance(module, nn.Softmax | nn.LogSoftmax):
        return SOFTMAX_FLOPS_PER_ELEMENT * n_out
    if isinstance(module, ELEMENTWISE_ACTIVATIONS):
        return n_out
    if isinstance(module, FREE):
        return 0
    return None


def residual_sum_flops(out_shape: Shape) -> int:
    """A residual block adds its shortcut to its layers' output: one addition per element."""
    return math.prod(out_shape)


def _affine(n_in: int, n_out: int, bias: object) -> int:
    return 2 * n_in * n_out + (n_out if bias is not None else 0)


def _window(kernel_size: int | tuple[int, ...], spatial_dims: int) -> int:
    if isinstance(kernel_size, int):
        return kernel_size**spatial_dims
    return math.prod(kernel_size)
