"""What a run is configured with besides the detector and the engine: data settings and the device.

Data config (``pretrain.data`` / ``finetune.data`` in config.yaml; unknown keys are an error)::

    resize       int (square bound), [w, h], or null (keep the tile size)   pretrain 1024, finetune 800
    flip_ratios  [horizontal, vertical, diagonal] flip probabilities          [0.25, 0.25, 0.25]
    max_objects  at most this many objects per tile (largest masks first)    pretrain 1000, finetune null

The pre-training tiles (800 px) are resized to 1024 as MutDet did; DIOR-R fine-tuning keeps 800 (SPEC 5).
Inference resizes exactly like fine-tuning (``resize``); flips and ``max_objects`` do not apply there.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a device is resolved: the config checks import this module
    import torch

STAGE_DEFAULTS = {
    "pretrain": {"resize": 1024, "flip_ratios": (0.25, 0.25, 0.25), "max_objects": 1000},
    "finetune": {"resize": 800, "flip_ratios": (0.25, 0.25, 0.25), "max_objects": None},
}


@dataclass(frozen=True)
class DataConfig:
    """Data settings of one run (module docstring); build it with ``from_dict``."""

    resize: int | tuple[int, int] | None
    flip_ratios: tuple[float, float, float]
    max_objects: int | None

    @classmethod
    def from_dict(cls, values: dict | None, stage: str) -> "DataConfig":
        """``values`` over the defaults of ``stage`` ('pretrain' or 'finetune')."""
        if stage not in STAGE_DEFAULTS:
            raise ValueError(f"data config stage must be one of {sorted(STAGE_DEFAULTS)}, got {stage!r}")
        values = dict(values or {})
        unknown = sorted(set(values) - set(STAGE_DEFAULTS[stage]))
        if unknown:
            raise ValueError(f"unknown {stage} data config keys {unknown}; known keys: {sorted(STAGE_DEFAULTS[stage])}")
        merged = {**STAGE_DEFAULTS[stage], **values}
        resize = merged["resize"]
        if isinstance(resize, (list, tuple)):
            if len(resize) != 2 or any(int(s) != s or s < 1 for s in resize):
                raise ValueError(f"{stage} data: resize must be a positive int, [w, h] or null, got {resize!r}")
            resize = (int(resize[0]), int(resize[1]))
        elif resize is not None:
            if isinstance(resize, bool) or int(resize) != resize or resize < 1:
                raise ValueError(f"{stage} data: resize must be a positive int, [w, h] or null, got {resize!r}")
            resize = int(resize)
        flips = tuple(float(r) for r in merged["flip_ratios"])
        if len(flips) != 3 or any(r < 0 for r in flips) or sum(flips) > 1 + 1e-9:
            raise ValueError(f"{stage} data: flip_ratios must be 3 probabilities (horizontal, vertical, diagonal) "
                             f"summing to at most 1, got {merged['flip_ratios']!r}")
        max_objects = merged["max_objects"]
        if max_objects is not None and (isinstance(max_objects, bool) or int(max_objects) != max_objects
                                        or max_objects < 1):
            raise ValueError(f"{stage} data: max_objects must be a positive integer or null, got {max_objects!r}")
        return cls(resize, flips, None if max_objects is None else int(max_objects))

    def to_dict(self) -> dict:
        return {"resize": list(self.resize) if isinstance(self.resize, tuple) else self.resize,
                "flip_ratios": list(self.flip_ratios), "max_objects": self.max_objects}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``'auto'`` / None -> CUDA when available, else CPU; anything else goes to ``torch.device``."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def with_num_classes(detector_cfg: dict | None, num_classes: int, log=None) -> dict:
    """A copy of ``detector_cfg`` with ``num_classes`` set by the pipeline (the data decide it: the
    dataset's class list, or the number of k-means clusters actually fitted); a different configured value
    is replaced, with a log line."""
    cfg = copy.deepcopy(dict(detector_cfg or {}))
    configured = cfg.get("num_classes")
    if configured is not None and int(configured) != num_classes and log is not None:
        log.warning("detector num_classes %s replaced by %d (set by the data)", configured, num_classes)
    cfg["num_classes"] = int(num_classes)
    return cfg
