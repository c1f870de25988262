"""Rotated multi-scale deformable attention of the full ARS-DETR (reference A.4).

The decoder's cross-attention samples the encoder memory around each query's *oriented* reference box:
the learned offsets are expressed in the box frame (scaled by half the box width / height, as in
Deformable DETR's 4-d references) and then rotated by the reference angle theta:

    loc = (cx, cy) + R(theta) (offset / n_points * (w, h) * 0.5),
    R(theta) (dx, dy) = (dx cos theta - dy sin theta, dx sin theta + dy cos theta)

(a rotation by +theta, clockwise on screen with y pointing down: the le90 / mmcv convention).

Before the rotation the decoder folds the angle into [-pi/4, pi/4] and swaps the box's w and h when
|theta| > pi/4 (``wrap_reference_angle``), so the applied rotation is always small; the rectangle is the
same, described from its other side.

Deviation from the released code, on purpose: the release rotates in normalised image coordinates
(x / W, y / H), which is a true rotation only for square inputs. Here the rotation is done in pixel-
proportional units (x scaled by the input aspect W / H), and the w/h swap converts the sides the same way.
For square inputs (every released config: 800 or 1024 tiles) both are identical.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .deformable_attention import MultiScaleDeformableAttention


def wrap_reference_angle(boxes: Tensor, angles: Tensor, aspect_ratio: float = 1.0) -> tuple[Tensor, Tensor]:
    """Fold reference angles into [-pi/4, pi/4], swapping the box sides where |theta| > pi/4.

    Args:
        boxes: (..., 4) (cx, cy, w, h) normalised to the padded input (w by its width W, h by its height H).
        angles: (...,) radians, le90.
        aspect_ratio: W / H of the padded input.
    Returns:
        (boxes, angles) of the same shapes. A swapped box has w' = h * H / W, h' = w * W / H (its sides in
        pixels exchanged) and theta' = ((theta + pi/4) mod pi/2) - pi/4, i.e. theta -/+ pi/2.
    """
    swap = angles.abs() > math.pi / 4
    w, h = boxes[..., 2], boxes[..., 3]
    new_w = torch.where(swap, h / aspect_ratio, w)
    new_h = torch.where(swap, w * aspect_ratio, h)
    new_angles = torch.where(swap, torch.remainder(angles + math.pi / 4, math.pi / 2) - math.pi / 4, angles)
    return torch.stack([boxes[..., 0], boxes[..., 1], new_w, new_h], dim=-1), new_angles


class RotatedMultiScaleDeformableAttention(MultiScaleDeformableAttention):
    """``MultiScaleDeformableAttention`` whose offsets are rotated by a per-query reference angle.

    Same parameters, same init (mmcv init: zero offset / attention weights). ``forward`` takes two extra
    keyword arguments, passed on to ``sampling_locations``:
        reference_angles: (B, Q) radians; None gives the plain (unrotated) attention.
        aspect_ratio: W / H of the padded input (1.0 for square tiles).
    With all angles 0 the module equals ``MultiScaleDeformableAttention`` exactly.
    """

    def sampling_locations(self, reference_points: Tensor, offsets: Tensor, spatial_shapes: Tensor,
                           reference_angles: Tensor | None = None, aspect_ratio: float = 1.0) -> Tensor:
        """Offsets (B, Q, nH, L, P, 2) -> rotated sampling locations (B, Q, nH, L, P, 2)."""
        if reference_angles is None:
            return super().sampling_locations(reference_points, offsets, spatial_shapes)
        cos = reference_angles.cos()[:, :, None, None, None]
        sin = reference_angles.sin()[:, :, None, None, None]
        if reference_points.shape[-1] == 2:
            # Offsets are in pixels of each level (isotropic), so rotate first, then normalise.
            dx, dy = offsets[..., 0], offsets[..., 1]
            rotated = torch.stack([dx * cos - dy * sin, dx * sin + dy * cos], dim=-1)
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
            return reference_points[:, :, None, :, None, :] + rotated / normalizer[None, None, None, :, None, :]
        if reference_points.shape[-1] == 4:
            ref = reference_points[:, :, None, :, None, :]
            local = offsets / self.n_points * ref[..., 2:] * 0.5  # box frame, normalised units
            # To units of the input height (isotropic), rotate, and back to normalised units.
            dx, dy = local[..., 0] * aspect_ratio, local[..., 1]
            rx = (dx * cos - dy * sin) / aspect_ratio
            ry = dx * sin + dy * cos
            return ref[..., :2] + torch.stack([rx, ry], dim=-1)
        raise ValueError(f"reference_points must end in 2 or 4, got {tuple(reference_points.shape)}")
