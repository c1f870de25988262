"""Rotated, object-aligned crops of oriented boxes, batched on the device (SPEC 2.4).

MutDet crops each (1.5x enlarged) box with mmcv's ``RoIAlignRotated(224, sampling_ratio=2, aligned=True,
clockwise=True)``. Here the same geometry is one ``F.affine_grid`` + ``F.grid_sample`` call per batch:
output pixel ``(j, i)`` of a ``S x S`` crop samples the image at

    p = c + R(theta) @ diag(w', h') / 2 @ (u, v),   u = (2j + 1)/S - 1,  v = (2i + 1)/S - 1,

with ``w' = w * enlarge``, ``h' = h * enlarge``, ``R(theta)`` rotating the crop's x axis onto the box's w
side ``(cos theta, sin theta)`` (image y down, so positive theta is clockwise on screen), and bilinear
interpolation (zeros outside the image; on a normalised image zero is the mean colour). Box coordinates
are continuous image coordinates as in ``aligned=True`` (pixel i covers [i, i+1)). The aspect ratio is
not kept: every box becomes a square crop, as in the released code. RoIAlign averages 2x2 samples per
output pixel; a single bilinear sample per output pixel differs by a slight blur only, since the crops
are mostly up-sampled (boxes smaller than 224 px).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def crop_transforms(rboxes: torch.Tensor, height: int, width: int, enlarge: float = 1.5) -> torch.Tensor:
    """``(N, 2, 3)`` affine matrices for ``F.affine_grid`` (``align_corners=False``) mapping crop
    coordinates to the normalised coordinates of an image of ``height x width``.

    Args:
        rboxes: ``(N, 5)`` ``cx, cy, w, h, theta`` in image pixels (continuous coordinates), radians.
    """
    rboxes = rboxes.to(torch.float32)
    cx, cy, w, h, t = rboxes.unbind(dim=1)
    cos, sin = torch.cos(t), torch.sin(t)
    bw, bh = w * enlarge, h * enlarge
    row_x = torch.stack([bw * cos / width, -bh * sin / width, 2 * cx / width - 1], dim=1)
    row_y = torch.stack([bw * sin / height, bh * cos / height, 2 * cy / height - 1], dim=1)
    return torch.stack([row_x, row_y], dim=1)


def rotated_crops(image: torch.Tensor, rboxes: torch.Tensor, size: int = 224, enlarge: float = 1.5) -> torch.Tensor:
    """Object-aligned crops of every box of one image.

    Args:
        image: ``(C, H, W)`` float tensor (on any device).
        rboxes: ``(N, 5)`` le90 boxes in the image's pixels.
    Returns:
        ``(N, C, size, size)`` crops on the image's device and dtype.
    """
    channels, height, width = image.shape
    n = len(rboxes)
    if n == 0:
        return image.new_zeros((0, channels, size, size))
    theta = crop_transforms(rboxes.to(image.device), height, width, enlarge).to(image.dtype)
    grid = F.affine_grid(theta, [n, channels, size, size], align_corners=False)  # (N, S, S, 2)
    # One grid_sample over a single image: the N grids are stacked along the output height, so the image
    # is neither copied N times nor expanded (grid_sample would materialise an expanded input).
    out = F.grid_sample(image[None], grid.reshape(1, n * size, size, 2), mode="bilinear",
                        padding_mode="zeros", align_corners=False)  # (1, C, N*S, S)
    return out.reshape(channels, n, size, size).transpose(0, 1)


def rotated_crops_rgb(image: np.ndarray, rboxes: np.ndarray, size: int = 96, enlarge: float = 1.5) -> np.ndarray:
    """The same crops of a ``(H, W, 3)`` uint8 image as ``(N, size, size, 3)`` uint8 (for pictures)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    crops = rotated_crops(tensor, torch.as_tensor(np.asarray(rboxes, np.float32)).reshape(-1, 5), size, enlarge)
    return crops.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()
