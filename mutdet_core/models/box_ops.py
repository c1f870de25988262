"""Axis-aligned box utilities used by the matcher, the criterion and the denoising generator.

Boxes are normalised to the padded input: (cx, cy, w, h) or (x0, y0, x1, y1) in [0, 1]. The ARS-DETR
family regresses (cx, cy, w, h) and the angle separately; its GIoU cost and loss are computed on the
*angle-free* axis-aligned box built from (cx, cy, w, h) (reference A.6), hence these plain helpers.
"""
from __future__ import annotations

import torch
from torch import Tensor


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) (cx, cy, w, h) -> (..., 4) (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) (x0, y0, x1, y1) -> (..., 4) (cx, cy, w, h)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (...,) area."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU of xyxy boxes (N, 4) x (M, 4) -> iou (N, M) and union (N, M)."""
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter / union.clamp(min=1e-12), union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU (https://giou.stanford.edu/) of xyxy boxes (N, 4) x (M, 4) -> (N, M).

    Degenerate (zero-area) boxes give finite values instead of the assertion DETR uses, because
    predicted boxes early in training and SAM pseudo boxes can be arbitrarily thin.
    """
    iou, union = box_iou(boxes1, boxes2)
    lt = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    hull = (wh[..., 0] * wh[..., 1]).clamp(min=1e-12)
    return iou - (hull - union) / hull


def elementwise_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU of aligned xyxy pairs (..., 4) x (..., 4) -> (...,).

    Equal to ``generalized_box_iou(a, b).diag()`` without the O(N^2) memory.
    """
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = torch.max(boxes1[..., :2], boxes2[..., :2])
    rb = torch.min(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = (area1 + area2 - inter).clamp(min=1e-12)
    lt_hull = torch.min(boxes1[..., :2], boxes2[..., :2])
    rb_hull = torch.max(boxes1[..., 2:], boxes2[..., 2:])
    wh_hull = (rb_hull - lt_hull).clamp(min=0)
    hull = (wh_hull[..., 0] * wh_hull[..., 1]).clamp(min=1e-12)
    return inter / union - (hull - union) / hull


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """log(x / (1 - x)) with x clamped to [0, 1] and both terms to >= eps (mmdet's definition).

    ARS-DETR uses eps=1e-5 in the non-DN refinement and eps=1e-3 for DN references and the DN decoder.
    """
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def aspect_ratios(boxes: Tensor, max_ratio: float = 1e4) -> Tensor:
    """Aspect ratio r = max(w/h, h/w) >= 1 of (..., >=4) (cx, cy, w, h, ...) boxes -> (...,).

    Computed from the normalised w, h, which equals the pixel aspect ratio for the square padded
    inputs of every dataset here (800 or 1024 tiles). Clamped to ``max_ratio`` so that zero-width
    boxes give a finite AR-CSL label instead of NaN.
    """
    w = boxes[..., 2].abs()
    h = boxes[..., 3].abs()
    ratio = torch.max(w, h) / torch.min(w, h).clamp(min=1e-12)
    return ratio.clamp(min=1.0, max=max_ratio)


def aspect_ratio_weight(ratio: Tensor) -> Tensor:
    """ARS-DETR aspect-ratio weight 2r / (r + 1) in [1, 2) for the angle loss and angle matching cost (A.3)."""
    return 2 * ratio / (ratio + 1)


def wrap_angle_le90(angle: Tensor) -> Tensor:
    """Wrap radians into the le90 range [-pi/2, pi/2): (theta + pi/2) mod pi - pi/2."""
    return torch.remainder(angle + torch.pi / 2, torch.pi) - torch.pi / 2
