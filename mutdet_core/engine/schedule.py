"""Learning-rate schedule: linear warm-up by iteration, step decay by epoch (mmcv ``policy='step'``).

Reference (ARS-DETR / MutDet configs): ``lr_config=dict(policy='step', step=[32], warmup='linear',
warmup_iters=500, warmup_ratio=1/3)`` with 36 epochs and mmcv's default gamma 0.1. In mmcv's semantics,
with 0-based epoch ``e``, the regular factor is ``gamma ** #{d in step : e >= d}``: ``step=[32]`` trains
epochs 0..31 (32 epochs) at the full rate and the last 4 at 0.1x. During warm-up (iteration ``i`` <
``warmup_iters``, counted over the whole run) the factor is multiplied by
``1 - (1 - i / warmup_iters) * (1 - warmup_ratio)``, i.e. 1/3 at iteration 0 rising linearly to 1.

The 12- and 24-epoch schedules of the fine-tuning tables are not in the released code; the decay keeps the
same proportion of the run: ``decay_epochs_for(E) = [round(32 / 36 * E)]`` -> 12: [11], 24: [21], 36: [32].
"""
from __future__ import annotations

import bisect
from typing import Sequence

import torch

from .defaults import REFERENCE_DECAY_EPOCH, REFERENCE_EPOCHS, decay_epochs_for  # noqa: F401  (torch-free)


class WarmupStepSchedule:
    """Multiplicative lr factor of iteration ``i`` (0-based, counted over the whole run).

    A callable object rather than a lambda so that ``LambdaLR.state_dict()`` records its parameters and a
    resumed run can check them.
    """

    def __init__(self, iters_per_epoch: int, decay_epochs: Sequence[int], gamma: float = 0.1,
                 warmup_iters: int = 500, warmup_ratio: float = 1.0 / 3.0):
        if iters_per_epoch < 1:
            raise ValueError(f"iters_per_epoch must be >= 1 (is the training set empty?), got {iters_per_epoch}")
        if warmup_iters < 0:
            raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
        if not 0 < warmup_ratio <= 1:
            raise ValueError(f"warmup_ratio must be in (0, 1], got {warmup_ratio}")
        if list(decay_epochs) != sorted(decay_epochs):
            raise ValueError(f"decay_epochs must be increasing, got {list(decay_epochs)}")
        self.iters_per_epoch = int(iters_per_epoch)
        self.decay_epochs = [int(e) for e in decay_epochs]
        self.gamma = float(gamma)
        self.warmup_iters = int(warmup_iters)
        self.warmup_ratio = float(warmup_ratio)

    def __call__(self, iteration: int) -> float:
        epoch = iteration // self.iters_per_epoch
        factor = self.gamma ** bisect.bisect_right(self.decay_epochs, epoch)
        if iteration < self.warmup_iters:
            factor *= 1.0 - (1.0 - iteration / self.warmup_iters) * (1.0 - self.warmup_ratio)
        return factor


def build_lr_scheduler(optimizer: torch.optim.Optimizer, iters_per_epoch: int, total_epochs: int,
                       decay_epochs: Sequence[int] | None = None, gamma: float = 0.1, warmup_iters: int = 500,
                       warmup_ratio: float = 1.0 / 3.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration ``LambdaLR``: call ``scheduler.step()`` after every optimizer step.

    Each param group's lr is its initial lr (which carries the group's multiplier) times the factor.
    ``decay_epochs=None`` -> ``decay_epochs_for(total_epochs)``.
    """
    if decay_epochs is None:
        decay_epochs = decay_epochs_for(total_epochs)
    schedule = WarmupStepSchedule(iters_per_epoch, decay_epochs, gamma, warmup_iters, warmup_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule)
