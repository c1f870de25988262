"""Differentiable rotated-box IoU in pure PyTorch, and the rotated IoU loss of plain Rotated D-DETR (A.7).

A rotated box is (cx, cy, w, h, theta), theta in radians, positive theta turning the w-axis from +x
toward +y (mmcv / mmrotate convention; the IoU itself does not depend on the orientation sense).

Algorithm (batched over any leading shape, no Python loop over pairs): the intersection of two
rectangles is a convex polygon whose vertices are among 24 candidates: the 4 corners of each box that
lie inside the other, and the 16 edge-edge crossings. Valid candidates are ordered by their angle
around their mean (the ordering is piecewise constant, so it is computed on detached values) and the
area follows from the shoelace formula, which is differentiable in the candidate coordinates. This is
the scheme of mmcv's ``diff_iou_rotated_2d`` (which needs a CUDA extension for the sort); here the sort
is ``torch.argsort``, so the same code runs on CPU and CUDA.

Degenerate inputs (identical boxes, shared edges, zero-size boxes, parallel edges) give finite values and
finite gradients: divisions use a guarded denominator and invalid candidates are replaced by a valid
vertex so that they add zero-length edges to the polygon.
"""
from __future__ import annotations

import torch
from torch import Tensor

_PARAM_TOL = 1e-6  # tolerance on the edge parameters t, u in [0, 1] (dimensionless)
_INSIDE_TOL = 1e-6  # tolerance of the point-in-box test, relative to the box size


def box_corners(boxes: Tensor) -> Tensor:
    """(..., 5) (cx, cy, w, h, theta) -> (..., 4, 2) corners c +- (w/2)(cos, sin) +- (h/2)(-sin, cos).

    Order (at theta = 0, y down): top-left, top-right, bottom-right, bottom-left (mmrotate 0.x order).
    """
    cx, cy, w, h, theta = boxes.unbind(-1)
    cos, sin = torch.cos(theta)[..., None], torch.sin(theta)[..., None]
    sx = boxes.new_tensor([-0.5, 0.5, 0.5, -0.5])
    sy = boxes.new_tensor([-0.5, -0.5, 0.5, 0.5])
    dx = sx * w[..., None]
    dy = sy * h[..., None]
    x = cx[..., None] + dx * cos - dy * sin
    y = cy[..., None] + dx * sin + dy * cos
    return torch.stack([x, y], dim=-1)


def _cross(a: Tensor, b: Tensor) -> Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _points_in_boxes(points: Tensor, boxes: Tensor) -> Tensor:
    """points (..., K, 2), boxes (..., 5) -> (..., K) bool, True when inside or on the boundary."""
    cx, cy, w, h, theta = boxes.unbind(-1)
    rel_x = points[..., 0] - cx[..., None]
    rel_y = points[..., 1] - cy[..., None]
    cos, sin = torch.cos(theta)[..., None], torch.sin(theta)[..., None]
    along_w = rel_x * cos + rel_y * sin
    along_h = -rel_x * sin + rel_y * cos
    tol = _INSIDE_TOL * (w + h)[..., None]
    return (along_w.abs() <= w[..., None] / 2 + tol) & (along_h.abs() <= h[..., None] / 2 + tol)


def _edge_crossings(corners1: Tensor, corners2: Tensor) -> tuple[Tensor, Tensor]:
    """Crossings of the 4 edges of box 1 with the 4 edges of box 2 -> points (..., 16, 2), valid (..., 16)."""
    p = corners1[..., :, None, :]  # (..., 4, 1, 2) edge starts of box 1
    r = (corners1.roll(-1, dims=-2) - corners1)[..., :, None, :]  # (..., 4, 1, 2) edge vectors of box 1
    q = corners2[..., None, :, :]  # (..., 1, 4, 2)
    s = (corners2.roll(-1, dims=-2) - corners2)[..., None, :, :]
    denom = _cross(r, s)  # (..., 4, 4)
    qp = q - p
    # Parallel (or zero-length) edges never give an isolated crossing; their shared stretch is already
    # covered by the corner-inside-box candidates. Guard the division so gradients stay finite.
    scale = r.norm(dim=-1) * s.norm(dim=-1)
    not_parallel = denom.abs() > 1e-10 * scale.clamp(min=1e-30)
    safe = torch.where(not_parallel, denom, torch.ones_like(denom))
    t = _cross(qp, s) / safe
    u = _cross(qp, r) / safe
    valid = not_parallel & (t >= -_PARAM_TOL) & (t <= 1 + _PARAM_TOL) & (u >= -_PARAM_TOL) & (u <= 1 + _PARAM_TOL)
    points = p + t[..., None] * r
    return points.flatten(-3, -2), valid.flatten(-2)


def _convex_polygon_area(points: Tensor, valid: Tensor) -> Tensor:
    """Area of the convex hull-ordered polygon of the valid candidates. points (..., K, 2), valid (..., K)."""
    weights = valid.to(points.dtype)
    count = weights.sum(-1, keepdim=True)
    center = (points.detach() * weights[..., None]).sum(-2) / count.clamp(min=1)  # (..., 2)
    # Area is translation invariant: centring on a constant keeps the shoelace exact and well conditioned.
    rel = points - center[..., None, :]
    angle = torch.atan2(rel[..., 1].detach(), rel[..., 0].detach())
    angle = torch.where(valid, angle, torch.full_like(angle, 4.0))  # invalid ones sort last (> pi)
    order = angle.argsort(dim=-1)
    rel = rel.gather(-2, order[..., None].expand_as(rel))
    valid = valid.gather(-1, order)
    # Replace invalid candidates by the first (valid) vertex: they close the polygon with zero-length edges.
    rel = torch.where(valid[..., None], rel, rel[..., :1, :])
    area = 0.5 * _cross(rel, rel.roll(-1, dims=-2)).sum(-1)
    return area.abs()


def rotated_box_intersection(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection area of rotated boxes (..., 5) x (..., 5) (broadcast) -> (...,)."""
    boxes1, boxes2 = torch.broadcast_tensors(boxes1, boxes2)
    corners1, corners2 = box_corners(boxes1), box_corners(boxes2)
    inside1 = _points_in_boxes(corners1, boxes2)
    inside2 = _points_in_boxes(corners2, boxes1)
    crossings, crossing_valid = _edge_crossings(corners1, corners2)
    candidates = torch.cat([corners1, corners2, crossings], dim=-2)  # (..., 24, 2)
    valid = torch.cat([inside1, inside2, crossing_valid], dim=-1)
    return _convex_polygon_area(candidates, valid)


def rotated_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-12) -> Tensor:
    """IoU of aligned rotated boxes (..., 5) x (..., 5) (broadcast) -> (...,), differentiable."""
    inter = rotated_box_intersection(boxes1, boxes2)
    area1 = boxes1[..., 2] * boxes1[..., 3]
    area2 = boxes2[..., 2] * boxes2[..., 3]
    union = (area1 + area2 - inter).clamp(min=eps)
    return inter / union


def pairwise_rotated_box_iou(boxes1: Tensor, boxes2: Tensor, chunk_size: int = 1024) -> Tensor:
    """IoU matrix of rotated boxes (N, 5) x (M, 5) -> (N, M).

    Only pairs whose circumscribed circles overlap can intersect, so the polygon clipping runs on those
    pairs alone (for two-stage encoder proposals against ground truths that is a small fraction of the
    matrix); rows are processed in chunks to bound memory (each clipped pair holds 24 candidate points).
    """
    out = boxes1.new_zeros(boxes1.shape[0], boxes2.shape[0])
    if out.numel() == 0:
        return out
    radius2 = 0.5 * torch.hypot(boxes2[:, 2], boxes2[:, 3])
    rows = []
    for part in boxes1.split(chunk_size):
        radius1 = 0.5 * torch.hypot(part[:, 2], part[:, 3])
        reach = radius1[:, None] + radius2[None, :]
        close = torch.cdist(part[:, :2], boxes2[:, :2]) <= reach * (1 + 1e-6) + 1e-12
        i, j = close.nonzero(as_tuple=True)
        row = part.new_zeros(part.shape[0], boxes2.shape[0])
        rows.append(row.index_put((i, j), rotated_box_iou(part[i], boxes2[j])))
    return torch.cat(rows, dim=0)


def rotated_iou_loss(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Element-wise rotated IoU loss -log(IoU.clamp(min=eps)) of aligned (..., 5) boxes -> (...,).

    This is mmrotate's ``RotatedIoULoss(mode='log')``; the caller sums and normalises.
    """
    return -torch.log(rotated_box_iou(pred, target).clamp(min=eps))
