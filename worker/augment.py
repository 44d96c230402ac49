"""Augmentation of training batches, on the batch's device. (Filled in by the augmentation
work: `build_augmenter` returns None while the spec has no augmentation.)"""

from __future__ import annotations

from collections.abc import Callable

import torch

Augmenter = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def build_augmenter(spec, task: str, num_classes: int | None) -> Augmenter | None:
    """`spec` is the JobSpec's dataset section. The augmenter maps a training batch (x, y) to
    (x', target): target is what the loss receives (mixup makes it soft); accuracy is still
    counted against y. Randomness comes from torch's default generator of the batch's device,
    which checkpoints save and restore."""
    return None
