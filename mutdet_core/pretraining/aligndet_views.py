"""AlignDet's two views of one image, for oriented boxes (the ``views: two_views`` mode of ``aligndet.py``).

AlignDet (liming-ai/AlignDet, ``configs/_base_/datasets/coco_soft-teacher.py``) loads an image and its
proposals once and runs two independent copies of one random pipeline (``MultiViewCocoDataset``), so both
views carry the same boxes in the same order (box identity = position). Each view, independently:

1. **Scale jitter**: keep-ratio ``Resize`` with the shorter side drawn from {640, 672, 704, 736, 768, 800}
   (``multiscale_mode='value'``). Here the data pipeline has already resized the tile to ``resize`` (the
   role of AlignDet's 800), so the view rescales the valid region by a factor drawn from ``scales``
   (default 640/800 ... 800/800 = 0.8 ... 1.0) into the same padded canvas (factors above 1 would not fit).
   Boxes as mmrotate's ``RResize``: centres times (sx, sy), w and h times sqrt(sx * sy), angle kept.
2. **Horizontal flip** with probability ``flip_prob`` (``RandFlip(flip_ratio=0.5)``): an exact mirror of
   the valid region, cx -> w - cx, angle -> -angle wrapped to le90 (mmdet's flip of xyxy boxes is exact
   too: x1' = w - x2).
3. **One colour operation** (``OneOf``) drawn uniformly from ``color_ops``: identity, autocontrast,
   equalize, solarize, color, contrast, brightness, sharpness, posterize (``AlignDet/datasets/pipelines/
   rand_aug.py``: ``prob=1``, ``magnitude=10``, ``random_magnitude=True`` -> m = randint(1, 10) in 1..9;
   solarize threshold min(int(m * 256 / 10), 255); colour / contrast / brightness / sharpness factor
   m * 1.8 / 10 + 0.1; posterize keeps 4 - int(m * 4 / 10) bits). The operation runs on the uint8 pixels
   of the valid region (torchvision's ports of the PIL operations), so the padding stays zero; AlignDet pads
   before its colour operation, so there the black padding enters autocontrast / equalize statistics.

Both views are made from the batch the data loader delivers (tile -> ``resize`` -> the data pipeline's
flips), on the batch's device, so the loader stays the same for every pre-training method; AlignDet builds
them from the image file. Randomness comes from torch's global generator (seeded per run by the engine).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..models.box_ops import wrap_angle_le90
from .method_config import COLOR_OPS

# AlignDet's shorter sides {640, ..., 800} over its 800 base: the scale factors of one view
RELEASED_SCALES = tuple(s / 800 for s in (640, 672, 704, 736, 768, 800))
MAX_MAGNITUDE = 10  # rand_aug.PARAMETER_MAX; magnitudes are drawn from 1 .. MAX_MAGNITUDE - 1


def _enhance_factor(magnitude: int) -> float:
    return magnitude * 1.8 / MAX_MAGNITUDE + 0.1  # rand_aug._enhancer_impl: "going to 0 just destroys it"


def apply_color_op(pixels: Tensor, op: str, magnitude: int) -> Tensor:
    """One of AlignDet's RandAugment colour operations on a (3, h, w) uint8 RGB tensor (module docstring)."""
    if op == "identity":
        return pixels
    if op == "autocontrast":
        return TF.autocontrast(pixels)
    if op == "equalize":
        return TF.equalize(pixels)
    if op == "solarize":
        return TF.solarize(pixels, min(int(magnitude * 256 / MAX_MAGNITUDE), 255))
    if op == "posterize":
        return TF.posterize(pixels, 4 - int(magnitude * 4 / MAX_MAGNITUDE))
    enhance = {"color": TF.adjust_saturation, "contrast": TF.adjust_contrast,
               "brightness": TF.adjust_brightness, "sharpness": TF.adjust_sharpness}
    if op not in enhance:
        raise ValueError(f"colour operation {op!r} is not one of {list(COLOR_OPS)}")
    return enhance[op](pixels, _enhance_factor(magnitude))


def box_instance_ids(targets: list[dict]) -> list[Tensor]:
    """Per image, (n_b,) int64 box ids unique in the batch: image b's boxes are offset by the boxes of the
    images before it (AlignDet's ``ins_labels_list``)."""
    ids, offset = [], 0
    for target in targets:
        n = len(target["labels"])
        ids.append(torch.arange(offset, offset + n, dtype=torch.int64, device=target["labels"].device))
        offset += n
    return ids


def keep_first_boxes(target: dict, max_boxes: int | None) -> dict:
    """The first ``max_boxes`` boxes of a target dict (AlignDet's ``SelectTopKProposals(topk)``, first in
    file order; here the store order, largest mask first); every per-box tensor is cut, ``image_size`` kept."""
    n = len(target["labels"])
    if max_boxes is None or n <= max_boxes:
        return dict(target)
    return {k: v[:max_boxes] if isinstance(v, Tensor) and k != "image_size" and v.dim() and v.shape[0] == n else v
            for k, v in target.items()}


def make_view(images: Tensor, padding_mask: Tensor, targets: list[dict], scales: Sequence[float] = RELEASED_SCALES,
              flip_prob: float = 0.5, color_ops: Sequence[str] = COLOR_OPS,
              mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
              ) -> tuple[Tensor, Tensor, list[dict]]:
    """One AlignDet view of a padded batch (module docstring).

    Args:
        images: (B, 3, Hp, Wp) normalised; padding_mask: (B, Hp, Wp) bool, True on padding (bottom / right).
        targets: B dicts with ``boxes`` (n, 4) cxcywh normalised by (Wp, Hp), ``angles`` (n,) le90 radians,
            any other per-box tensors (labels, embeddings, instance ids) and ``image_size`` (h, w).
        scales: scale factors in (0, 1], one drawn per image; flip_prob: horizontal flip probability;
        color_ops: names from ``COLOR_OPS``, one drawn per image; mean / std: the normalisation (0-255 RGB).
    Returns:
        (images (B, 3, Hp, Wp), padding_mask (B, Hp, Wp), targets): same boxes, same order, moved with their
        pixels; ``image_size`` (h, w) is the new valid size; a cached ``angle_targets`` is dropped (angles change).
    """
    if not scales or any(not 0 < s <= 1 for s in scales):
        raise ValueError(f"view scales must be in (0, 1] (the view is drawn into the batch canvas), got {scales}")
    if not color_ops or any(op not in COLOR_OPS for op in color_ops):
        raise ValueError(f"view colour operations must be some of {list(COLOR_OPS)}, got {color_ops}")
    batch, _, height, width = images.shape
    mean_t = images.new_tensor(mean)[:, None, None]
    std_t = images.new_tensor(std)[:, None, None]
    out_images = torch.zeros_like(images)
    out_mask = torch.ones_like(padding_mask)
    out_targets = []
    for b, target in enumerate(targets):
        h = int((~padding_mask[b, :, 0]).sum())
        w = int((~padding_mask[b, 0, :]).sum())
        region = images[b, :, :h, :w]
        scale = float(scales[int(torch.randint(len(scales), ()))])
        new_h, new_w = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))  # mmcv rounding
        if (new_h, new_w) != (h, w):  # bilinear, half-pixel centres: cv2.INTER_LINEAR as mmcv resizes
            region = F.interpolate(region[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
        sx, sy = new_w / w, new_h / h
        boxes = target["boxes"].clone()
        boxes[:, 0] *= sx
        boxes[:, 1] *= sy
        boxes[:, 2:4] *= math.sqrt(sx * sy)
        angles = target["angles"].clone()
        if float(torch.rand(())) < flip_prob:
            region = region.flip(-1)
            boxes[:, 0] = new_w / width - boxes[:, 0]
            angles = wrap_angle_le90(-angles)
        op = color_ops[int(torch.randint(len(color_ops), ()))]
        if op != "identity":
            magnitude = int(torch.randint(1, MAX_MAGNITUDE, ()))
            pixels = (region * std_t + mean_t).round().clamp(0, 255).to(torch.uint8)
            region = (apply_color_op(pixels, op, magnitude).to(images.dtype) - mean_t) / std_t
        out_images[b, :, :new_h, :new_w] = region
        out_mask[b, :new_h, :new_w] = False
        view_target = {k: v for k, v in target.items() if k != "angle_targets"}
        view_target["boxes"], view_target["angles"] = boxes, angles
        view_target["image_size"] = torch.tensor([new_h, new_w], dtype=torch.int64, device=boxes.device)
        out_targets.append(view_target)
    return out_images, out_mask, out_targets
