"""How much memory a network's activations need, from its summary's output shapes: checked
against the training process's limit before a job is queued (core/checks.py), and used by the
loop to size its evaluation batches (worker/train.py).

An estimate, not a measurement. Training keeps every layer's output of a batch for the
backward pass and computes a gradient of the same size for each, so a batch costs about twice
its activations; evaluation keeps only a layer's input and output alive at a time. The
weights count once (their gradients and the optimizer's state are the runtime limit's to
catch). What it leaves out (the data itself, torch's own memory, workspace of convolution
algorithms) makes it a lower bound: a spec it refuses cannot train within the limit."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from models.build import ModelSummary

BYTES_PER_VALUE = 4  # float32; a half-precision run needs less
EVAL_BATCH_MAX = 4096
# Evaluation batches are cut to EVAL_BATCH_MAX samples until they would need more than this
# or more than a training batch does, whichever is larger; then smaller.
EVAL_FLOOR_BYTES = 256 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    train_bytes: int  # one training batch's activations and their gradients, and the weights
    eval_bytes: int  # one evaluation batch's largest live input/output pair
    eval_batch: int
    largest_layer: int  # index into the summary's rows: the largest output
    largest_values: int  # that output's values per sample

    def describe_train(self, summary: ModelSummary, batch_size: int) -> str:
        row = summary.layers[self.largest_layer]
        shape = "x".join(str(d) for d in row.output_shape)
        return (f"training a batch of {batch_size} needs an estimated {_size(self.train_bytes)} "
                f"(the largest activation is {row.name} ({row.type}), {shape} per sample)")


def estimate(summary: ModelSummary, batch_size: int) -> MemoryEstimate:
    sizes = [prod(summary.input_shape)] + [prod(row.output_shape) for row in summary.layers]
    per_sample = sum(sizes)
    pair = max(a + b for a, b in zip(sizes, sizes[1:], strict=False)) if len(sizes) > 1 \
        else sizes[0]
    train = 2 * per_sample * batch_size * BYTES_PER_VALUE + summary.total_params * BYTES_PER_VALUE
    budget = max(train, EVAL_FLOOR_BYTES)
    eval_batch = max(1, min(EVAL_BATCH_MAX, budget // (pair * BYTES_PER_VALUE)))
    largest = max(range(len(summary.layers)), key=lambda i: sizes[i + 1]) if summary.layers \
        else 0
    return MemoryEstimate(train, pair * eval_batch * BYTES_PER_VALUE, eval_batch, largest,
                          sizes[largest + 1] if summary.layers else sizes[0])


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"
