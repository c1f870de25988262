"""The torch-free defaults that ``TrainConfig`` needs (engine/config.py), so a config check imports no torch.

``optim.py`` and ``schedule.py`` re-export them: ``from mutdet_core.engine.schedule import decay_epochs_for``
keeps working.
"""
from __future__ import annotations

# parameter-name substrings that learn at lr * lr_mult (mmcv paramwise_cfg.custom_keys; optim.py)
DEFAULT_LR_MULT_KEYS = ("backbone", "sampling_offsets", "reference_points")

REFERENCE_EPOCHS = 36
REFERENCE_DECAY_EPOCH = 32


def decay_epochs_for(total_epochs: int) -> list[int]:
    """Epochs (0-based: the decay applies from that epoch on) of the x0.1 step for a run of ``total_epochs``.

    ``round(32 / 36 * total_epochs)``: 36 -> [32], 24 -> [21], 12 -> [11], 1 -> [1] (a decay at the end
    of the run, i.e. none). Python rounds halves to even; no schedule used here sits on a half.
    """
    if int(total_epochs) != total_epochs or total_epochs < 1:
        raise ValueError(f"total_epochs must be a positive integer, got {total_epochs!r}")
    return [int(round(REFERENCE_DECAY_EPOCH / REFERENCE_EPOCHS * total_epochs))]
