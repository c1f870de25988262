"""Training augmentation for oriented boxes, as mmrotate 0.x's pipeline (reference A.8, MutDet 6.1/6.2).

Order: ``RResize`` -> ``RRandomFlip`` -> ``Normalize``; padding to a multiple of 32 happens in the collate
function (``collate.py``), where the batch size is known.

A *sample* is a dict:

    ``image``   (H, W, 3) numpy RGB (uint8 until ``Normalize``, float32 after; ``(3, H, W)`` torch after ``ToTensor``)
    ``obbs``    (n, 5) float64 pixel boxes (cx, cy, w, h, theta), le90 (w >= h, theta in [-pi/2, pi/2))
    ``scale_factor`` (sx, sy) applied so far, ``flip`` None or the direction applied
    any other per-object arrays (``labels``, ``embeddings``, ``difficulty``) ride along untouched: no
    transform here drops or reorders objects, so they stay aligned with ``obbs`` (pre-training
    embeddings depend on this).

Randomness comes from the ``numpy.random.Generator`` passed to each call (the dataset derives it from the
sampler's per-sample seed), never from global state.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch

from mutdet_core.geometry import norm_angle

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255 scale (mmdet img_norm_cfg)
IMAGENET_STD = (58.395, 57.12, 57.375)
FLIP_DIRECTIONS = ("horizontal", "vertical", "diagonal")


def rescale_size(width: int, height: int, scale: Sequence[int]) -> tuple[tuple[int, int], float]:
    """mmcv ``rescale_size`` for a keep-ratio resize into ``scale`` (long edge, short edge bound).

    Returns ``((new_w, new_h), factor)`` with ``factor = min(max(scale) / long edge, min(scale) / short edge)``
    and each side rounded half up (``int(x * factor + 0.5)``), as mmcv does.
    """
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(width, height), short_edge / min(width, height))
    return (int(width * factor + 0.5), int(height * factor + 0.5)), factor


def resize_obbs(obbs: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """mmrotate ``RResize._resize_bboxes``: centres scale by (sx, sy), w and h by sqrt(sx * sy), theta kept.

    Exact for sx == sy (the keep-ratio case); for sx != sy it is mmrotate's approximation (a rotated
    rectangle under anisotropic scaling is no longer a rectangle of the same angle).
    """
    out = np.array(obbs, dtype=np.float64, copy=True).reshape(-1, 5)
    out[:, 0] *= sx
    out[:, 1] *= sy
    out[:, 2:4] *= math.sqrt(sx * sy)
    return out


def flip_obbs(obbs: np.ndarray, width: int, height: int, direction: str) -> np.ndarray:
    """mmrotate ``RRandomFlip.bbox_flip`` (le90) for an image of ``width`` x ``height`` pixels.

    horizontal: ``cx' = W - cx - 1``, ``theta' = norm_le90(pi - theta)`` (= -theta modulo pi: mirroring
    reverses the rotation sense); vertical: ``cy' = H - cy - 1``, same angle update; diagonal (both axes,
    i.e. a 180 degree rotation): both centres flipped, theta unchanged.
    The ``- 1`` is mmrotate's (pixel-index convention); it shifts boxes by one pixel relative to an exact
    mirror of continuous coordinates (``W - cx``), and is kept so training matches the reference. Applying
    the same flip twice restores the boxes.
    """
    if direction not in FLIP_DIRECTIONS:
        raise ValueError(f"flip direction {direction!r}: expected one of {FLIP_DIRECTIONS}")
    out = np.array(obbs, dtype=np.float64, copy=True).reshape(-1, 5)
    if direction in ("horizontal", "diagonal"):
        out[:, 0] = width - out[:, 0] - 1
    if direction in ("vertical", "diagonal"):
        out[:, 1] = height - out[:, 1] - 1
    if direction != "diagonal":
        out[:, 4] = norm_angle(np.pi - out[:, 4], "le90")
    return out


def flip_image(image: np.ndarray, direction: str) -> np.ndarray:
    """``mmcv.imflip``: horizontal mirrors columns, vertical rows, diagonal both."""
    axis = {"horizontal": 1, "vertical": 0, "diagonal": (0, 1)}[direction]
    return np.ascontiguousarray(np.flip(image, axis=axis))


class RResize:
    """Keep-ratio resize into ``scale`` = (w, h) bounds (mmrotate ``RResize(img_scale, keep_ratio=True)``),
    bilinear (cv2 ``INTER_LINEAR``, mmcv's default). A tile already at its target size is left as is."""

    def __init__(self, scale: int | Sequence[int]):
        self.scale = (int(scale), int(scale)) if isinstance(scale, (int, np.integer)) else tuple(int(s) for s in scale)
        if len(self.scale) != 2 or min(self.scale) < 1:
            raise ValueError(f"resize scale must be a positive int or (w, h), got {scale!r}")

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        image = sample["image"]
        height, width = image.shape[:2]
        (new_w, new_h), _ = rescale_size(width, height, self.scale)
        if (new_w, new_h) == (width, height):
            return sample
        sample = dict(sample)
        sample["image"] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        sx, sy = new_w / width, new_h / height  # the realised factors, as mmdet's Resize records them
        sample["obbs"] = resize_obbs(sample["obbs"], sx, sy)
        old = sample.get("scale_factor", (1.0, 1.0))
        sample["scale_factor"] = (old[0] * sx, old[1] * sy)
        return sample

    def __repr__(self) -> str:
        return f"RResize(scale={self.scale})"


class RRandomFlip:
    """At most one flip per sample, chosen with probabilities ``ratios`` for ``directions`` (mmdet's
    list form: the rest of the probability mass is "no flip"). Reference: 0.25 each for horizontal,
    vertical and diagonal, i.e. 25 % of samples are not flipped."""

    def __init__(self, ratios: Sequence[float] = (0.25, 0.25, 0.25), directions: Sequence[str] = FLIP_DIRECTIONS):
        if len(ratios) != len(directions):
            raise ValueError(f"{len(ratios)} flip ratios for {len(directions)} directions")
        bad = [d for d in directions if d not in FLIP_DIRECTIONS]
        if bad:
            raise ValueError(f"flip directions {bad}: expected some of {FLIP_DIRECTIONS}")
        if any(r < 0 for r in ratios) or sum(ratios) > 1 + 1e-9:
            raise ValueError(f"flip ratios {list(ratios)} must be >= 0 and sum to at most 1")
        self.ratios = [float(r) for r in ratios]
        self.directions = list(directions)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        choices = self.directions + [None]
        probs = self.ratios + [max(0.0, 1.0 - sum(self.ratios))]
        direction = choices[int(rng.choice(len(choices), p=np.asarray(probs) / sum(probs)))]
        if direction is None:
            return sample
        sample = dict(sample)
        height, width = sample["image"].shape[:2]
        sample["image"] = flip_image(sample["image"], direction)
        sample["obbs"] = flip_obbs(sample["obbs"], width, height, direction)
        sample["flip"] = direction
        return sample

    def __repr__(self) -> str:
        return f"RRandomFlip(ratios={self.ratios}, directions={self.directions})"


class Normalize:
    """``(image - mean) / std`` per RGB channel in float32, then (3, H, W) torch (``ToTensor``)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        sample = dict(sample)
        image = (sample["image"].astype(np.float32) - self.mean) / self.std
        sample["image"] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return sample

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class Compose:
    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


def build_transforms(train: bool = True, resize: int | Sequence[int] | None = 800,
                     flip_ratios: Sequence[float] = (0.25, 0.25, 0.25),
                     flip_directions: Sequence[str] = FLIP_DIRECTIONS) -> Compose:
    """The reference pipeline: ``RResize(resize)`` (None: keep the tile size), ``RRandomFlip`` when
    ``train`` (with all-zero ``flip_ratios`` it never flips), ``Normalize``. Fine-tuning on DIOR-R keeps
    800; pre-training resizes the 800 tiles to 1024."""
    steps = []
    if resize is not None:
        steps.append(RResize(resize))
    if train and sum(flip_ratios) > 0:
        steps.append(RRandomFlip(flip_ratios, flip_directions))
    steps.append(Normalize())
    return Compose(steps)
