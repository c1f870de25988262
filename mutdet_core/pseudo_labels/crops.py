"""Rotated, object-aligned crops of oriented boxes, batched on the device (SPEC 2.4).

MutDet crops each (1.5x enlarged) box with mmcv's ``RoIAlignRotated(224, sampling_ratio=2, aligned=True,
clockwise=True)``. Here the same operation is ``F.affine_grid`` + ``F.grid_sample`` calls per batch, no
compiled op. Output pixel ``(j, i)`` of a ``S x S`` crop is a bin of the enlarged box; with ``r`` =
``sampling_ratio`` it averages the ``r x r`` bilinear samples at

    p = c + R(theta) @ diag(w', h') / 2 @ (u, v),
    u = (2 (r j + a) + 1) / (r S) - 1,  v = (2 (r i + b) + 1) / (r S) - 1,   a, b = 0 .. r-1,

with ``w' = w * enlarge``, ``h' = h * enlarge``, ``R(theta)`` rotating the crop's x axis onto the box's w
side ``(cos theta, sin theta)`` (image y down, so positive theta is clockwise on screen: mmcv's
``clockwise=True``). Box coordinates are continuous image coordinates as in ``aligned=True`` (pixel k covers
[k, k+1), its centre is k + 0.5). The aspect ratio is not kept: every box becomes a square crop, as in the
released code. These are mmcv's sample positions exactly (its ``roi_align_rotated`` kernel: bin ``ph``, sample
``iy`` at ``-h'/2 + (ph + (iy + 0.5) / r) h' / S``, rotated, plus the centre minus 0.5).

Samples outside the image, ``edge_rule``:

- ``"mmcv"`` (as released): mmcv's ``bilinear_interpolate`` returns 0 for a sample more than one pixel
  beyond the outermost pixel centres (index coordinate ``y < -1 or y > H``, same for x) and otherwise clamps
  it onto the image (``y <= 0 -> 0``, ``y >= H-1 -> H-1``), so a sample in that one-pixel band takes the
  edge pixel's value: here a one-pixel replicated border, then zeros beyond it (``rotated_crops``).
- ``"zero"``: plain bilinear with zeros outside (``padding_mode="zeros"``): in the band the edge pixel
  fades to 0 (on a normalised image zero is the mean colour).

``sampling_ratio=1, edge_rule="zero"`` is this module's earlier behaviour (one bilinear sample per output
pixel). The r x r samples are taken as r*r shifted grids accumulated one after the other, so memory stays
that of one ``S x S`` grid per crop whatever r is; the cost grows as r*r ``grid_sample`` calls (about 4x the
crop time for r = 2, small next to the embedding network's).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .params import CROP_EDGE_RULES as EDGE_RULES  # one list for the config check and here


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


def check_crop_args(sampling_ratio: int, edge_rule: str) -> None:
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int) or sampling_ratio < 1:
        raise ValueError(f"crops: sampling_ratio must be an integer >= 1, got {sampling_ratio!r}")
    if edge_rule not in EDGE_RULES:
        raise ValueError(f"crops: edge_rule must be one of {list(EDGE_RULES)}, got {edge_rule!r}")


def _past_band(rboxes: torch.Tensor, height: int, width: int, enlarge: float) -> torch.Tensor:
    """``(N,)`` bool: boxes (enlarged) with a corner more than one pixel beyond the outermost pixel centres,
    i.e. outside ``[-0.5, W + 0.5] x [-0.5, H + 0.5]`` in continuous coordinates. Only their crops can
    hold samples that mmcv zeroes (every sample lies inside its box)."""
    cx, cy, w, h, t = rboxes.unbind(dim=1)
    half_w, half_h = w * enlarge / 2, h * enlarge / 2
    reach_x = (half_w * torch.cos(t)).abs() + (half_h * torch.sin(t)).abs()
    reach_y = (half_w * torch.sin(t)).abs() + (half_h * torch.cos(t)).abs()
    return (cx - reach_x < -0.5) | (cx + reach_x > width + 0.5) | (cy - reach_y < -0.5) | (cy + reach_y > height + 0.5)


def rotated_crops(image: torch.Tensor, rboxes: torch.Tensor, size: int = 224, enlarge: float = 1.5,
                  sampling_ratio: int = 2, edge_rule: str = "mmcv") -> torch.Tensor:
    """Object-aligned crops of every box of one image (mmcv ``RoIAlignRotated`` with the defaults).

    Args:
        image: ``(C, H, W)`` float tensor (on any device).
        rboxes: ``(N, 5)`` le90 boxes in the image's pixels.
        size: the crop's side S (the RoIAlign output size).
        enlarge: factor on w and h before cropping.
        sampling_ratio: r, the r x r bilinear samples averaged per output pixel (mmcv's ``sampling_ratio``;
            the release uses 2).
        edge_rule: ``"mmcv"`` or ``"zero"``, samples outside the image (module docstring).
    Returns:
        ``(N, C, size, size)`` crops on the image's device and dtype.
    """
    check_crop_args(sampling_ratio, edge_rule)
    channels, height, width = image.shape
    n = len(rboxes)
    if n == 0:
        return image.new_zeros((0, channels, size, size))
    rboxes = rboxes.to(device=image.device, dtype=torch.float32)
    if edge_rule == "mmcv":
        # mmcv clamps a sample within one pixel of the outermost pixel centres onto the edge pixel. Sampling
        # the image padded with one replicated pixel gives exactly that (between an edge pixel and its copy,
        # bilinear is the edge value), with zero padding, grid_sample's fast path; the samples beyond the
        # band are then zeroed, for the few boxes that reach there.
        source = F.pad(image[None], (1, 1, 1, 1), mode="replicate")
        theta = crop_transforms(rboxes + rboxes.new_tensor([1, 1, 0, 0, 0]), height + 2, width + 2, enlarge)
        past = _past_band(rboxes, height, width, enlarge).nonzero()[:, 0]
        # band in the padded image's normalised coordinates: index 0 .. W + 1 <=> |g| <= 1 - 1 / (W + 2)
        band = theta.new_tensor([1 - 1 / (width + 2), 1 - 1 / (height + 2)]).to(image.dtype)
    else:
        source, theta, past = image[None], crop_transforms(rboxes, height, width, enlarge), None
    theta = theta.to(image.dtype)
    centres = F.affine_grid(theta, [n, channels, size, size], align_corners=False)  # (N, S, S, 2) bin centres
    r = sampling_ratio
    out = None
    for b in range(r):
        for a in range(r):
            # sample (a, b) of every bin sits (du, dv) from the bin centre in crop coordinates ([-1, 1] over
            # the crop); through the affine map that is one (x, y) shift per box in image coordinates
            du, dv = (2 * a + 1 - r) / (r * size), (2 * b + 1 - r) / (r * size)
            grid = centres + (theta[:, :, 0] * du + theta[:, :, 1] * dv)[:, None, None, :] if r > 1 else centres
            # One grid_sample over a single image: the N grids are stacked along the output height, so the
            # image is neither copied N times nor expanded (grid_sample would materialise an expanded input).
            samples = F.grid_sample(source, grid.reshape(1, n * size, size, 2), mode="bilinear",
                                    padding_mode="zeros", align_corners=False).view(channels, n, size, size)
            if past is not None and len(past):
                samples[:, past] *= (grid[past].abs() <= band).all(dim=-1).to(samples.dtype)
            out = samples if out is None else out.add_(samples)
    if r > 1:
        out = out.div_(r * r)
    return out.transpose(0, 1)


def rotated_crops_rgb(image: np.ndarray, rboxes: np.ndarray, size: int = 96, enlarge: float = 1.5,
                      sampling_ratio: int = 2, edge_rule: str = "mmcv") -> np.ndarray:
    """The same crops of a ``(H, W, 3)`` uint8 image as ``(N, size, size, 3)`` uint8 (for pictures)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    crops = rotated_crops(tensor, torch.as_tensor(np.asarray(rboxes, np.float32)).reshape(-1, 5), size, enlarge,
                          sampling_ratio, edge_rule)
    return crops.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()
