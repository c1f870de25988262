"""AdamW with the reference learning-rate multipliers (mmcv ``paramwise_cfg.custom_keys``).

ARS-DETR and MutDet (every released config) train with ``AdamW(lr=1e-4, weight_decay=1e-5,
betas=(0.9, 0.999))`` and ``custom_keys={'backbone': 0.1, 'sampling_offsets': 0.1, 'reference_points':
0.1}``: a parameter whose *name* contains one of these substrings learns 10x slower. Frozen parameters
(``requires_grad=False``, e.g. the backbone in pre-training, ResNet stage 1 in fine-tuning) are left out
of the optimizer entirely, so AdamW keeps no state for them and a checkpoint stays small.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from .defaults import DEFAULT_LR_MULT_KEYS  # torch-free home (engine.config needs it without torch)


def split_parameters(named_parameters: Iterable[tuple[str, nn.Parameter]], lr_mult_keys: Sequence[str]):
    """Split trainable parameters into ``(normal, reduced)`` lists of ``(name, parameter)``.

    ``reduced`` holds those whose name contains any of ``lr_mult_keys``. Frozen parameters are dropped and a
    parameter shared under two names (tied weights) is counted once.
    """
    normal, reduced, seen = [], [], set()
    for name, param in named_parameters:
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (reduced if any(key in name for key in lr_mult_keys) else normal).append((name, param))
    return normal, reduced


def build_optimizer(model: nn.Module, lr: float = 1e-4, weight_decay: float = 1e-5,
                    betas: Sequence[float] = (0.9, 0.999), lr_mult: float = 0.1,
                    lr_mult_keys: Sequence[str] = DEFAULT_LR_MULT_KEYS) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model`` in up to two groups.

    Group ``"default"`` has ``lr``; group ``"lr_mult"`` (names containing any of ``lr_mult_keys``) has
    ``lr * lr_mult``. Each group records ``name`` and ``param_names`` (for logs and tests) and
    ``lr_mult``. The schedule (``schedule.py``) scales each group's initial lr, so the ratio holds all run.
    """
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if lr_mult <= 0:
        raise ValueError(f"lr_mult must be positive, got {lr_mult}")
    if isinstance(lr_mult_keys, str):  # a common slip in YAML: a bare string instead of a list
        raise ValueError(f"lr_mult_keys must be a list of name substrings, got the string {lr_mult_keys!r}")
    normal, reduced = split_parameters(model.named_parameters(), lr_mult_keys)
    if not normal and not reduced:
        raise ValueError("the model has no trainable parameters (all requires_grad=False)")
    groups = []
    for group_name, members, mult in (("default", normal, 1.0), ("lr_mult", reduced, lr_mult)):
        if members:
            groups.append({
                "name": group_name, "params": [p for _, p in members], "param_names": [n for n, _ in members],
                "lr": lr * mult, "lr_mult": mult,
            })
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def group_summary(optimizer: torch.optim.Optimizer) -> str:
    """One line per group: name, parameter count, current lr. For the training log."""
    lines = []
    for group in optimizer.param_groups:
        count = sum(p.numel() for p in group["params"])
        lines.append(f"{group.get('name', '?')}: {len(group['params'])} tensors, {count:,} values, "
                     f"lr {group['lr']:.3g}")
    return "; ".join(lines)
