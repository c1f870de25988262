"""Batching: pad images to a common size (multiple of 32) and build the detector's targets.

The model is called as ``model(batch.images, batch.masks, batch.targets)`` (see ``engine/trainer.py``):

    ``images``  (B, 3, Hp, Wp) float32, normalised; zero beyond each image (mmdet ``Pad``: pad value 0
                after normalisation), bottom and right
    ``masks``   (B, Hp, Wp) bool, True on padding (the DETR / Deformable-DETR convention)
    ``targets`` list of B dicts (docs/DETECTOR_CONTRACT.md):
                ``labels`` (n,) int64; ``boxes`` (n, 4) float32 cxcywh divided by (Wp, Hp, Wp, Hp), i.e.
                normalised to the *padded* input as the contract says; ``angles`` (n,) float32 le90 radians;
                ``image_size`` (2,) int64 (h, w) of the valid region; optional ``embeddings`` (n, D) float32
    ``meta``    list of B dicts, not used by the model: ``tile``, ``store_index``, ``orig_size``,
                ``scale_factor``, ``flip``, ``difficulty`` (n,) int64 tensor

Hp, Wp = the batch's largest height / width rounded up to ``size_divisor``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

META_KEYS = ("tile", "store_index", "orig_size", "scale_factor", "flip")


@dataclass
class Batch:
    """A padded batch; ``to(device)`` moves images, masks and target tensors."""

    images: torch.Tensor
    masks: torch.Tensor
    targets: list[dict]
    meta: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return self.images.shape[0]

    def _map(self, fn) -> "Batch":
        targets = [{k: fn(v) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in self.targets]
        return Batch(fn(self.images), fn(self.masks), targets, self.meta)

    def to(self, device) -> "Batch":
        return self._map(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> "Batch":  # called by DataLoader(pin_memory=True)
        return self._map(lambda t: t.pin_memory())


def padded_size(sizes, size_divisor: int = 32) -> tuple[int, int]:
    """(Hp, Wp): the largest (h, w) of ``sizes`` rounded up to a multiple of ``size_divisor``."""
    height = max(h for h, _ in sizes)
    width = max(w for _, w in sizes)
    if size_divisor > 1:
        height = math.ceil(height / size_divisor) * size_divisor
        width = math.ceil(width / size_divisor) * size_divisor
    return height, width


def collate_detection(samples: list[dict], size_divisor: int = 32) -> Batch:
    """Samples of ``TileDetectionDataset`` -> ``Batch`` (see the module docstring)."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    sizes = [tuple(s["image"].shape[-2:]) for s in samples]
    height, width = padded_size(sizes, size_divisor)
    images = torch.zeros(len(samples), 3, height, width, dtype=torch.float32)
    masks = torch.ones(len(samples), height, width, dtype=torch.bool)
    targets, meta = [], []
    scale = torch.tensor([width, height, width, height], dtype=torch.float64)
    for b, (sample, (h, w)) in enumerate(zip(samples, sizes)):
        images[b, :, :h, :w] = sample["image"]
        masks[b, :h, :w] = False
        obbs = torch.as_tensor(np.asarray(sample["obbs"], dtype=np.float64).reshape(-1, 5))
        target = {
            "labels": torch.as_tensor(np.asarray(sample["labels"], dtype=np.int64)),
            "boxes": (obbs[:, :4] / scale).to(torch.float32),
            "angles": obbs[:, 4].to(torch.float32),
            "image_size": torch.tensor([h, w], dtype=torch.int64),
        }
        if "embeddings" in sample:
            target["embeddings"] = torch.as_tensor(np.asarray(sample["embeddings"], dtype=np.float32))
        targets.append(target)
        info = {k: sample[k] for k in META_KEYS if k in sample}
        if "difficulty" in sample:
            info["difficulty"] = torch.as_tensor(np.asarray(sample["difficulty"], dtype=np.int64))
        meta.append(info)
    return Batch(images, masks, targets, meta)


def targets_to_pixel_obbs(target: dict, padded_hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of the normalisation: (n, 5) pixel (cx, cy, w, h, theta) from a target dict and (Hp, Wp)."""
    height, width = padded_hw
    scale = target["boxes"].new_tensor([width, height, width, height])
    return torch.cat([target["boxes"] * scale, target["angles"][:, None]], dim=1)
