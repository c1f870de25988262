"""Oriented boxes: polygon <-> (cx, cy, w, h, theta) conversions in the mmrotate 0.x conventions.

Frame: x right, y down, theta in radians; positive theta turns the w-axis from +x towards +y (clockwise on
screen, mmcv ``clockwise=True``). Corners of an obb are ``c +- (w/2)(cos, sin) +- (h/2)(-sin, cos)``.

Angle versions (an obb and its version together name one rectangle; the same rectangle has one
parameterisation per version, up to the w == h ambiguity of squares):

- ``'le90'``:  w >= h, theta in [-pi/2, pi/2)   (ARS-DETR / MutDet)
- ``'le135'``: w >= h, theta in [-pi/4, 3pi/4)
- ``'oc'``:    theta in (0, pi/2], w is the side along theta (no long-side rule; mmrotate 0.x
  ``cv2.minAreaRect`` convention, OpenCV < 4.5.1 semantics mapped to (0, 90] by mmrotate's loop).

Every function takes numpy arrays or torch tensors with any leading dimensions. numpy is computed in
float64 and returned in the input's float dtype; tensors are computed in their own dtype (half -> float32)
on their own device. Integer inputs give float64.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._interop import (check_last_dim, check_version, compute_dtype, is_torch, restore, result_dtype,
                       to_tensor)

HALF_PI = math.pi / 2
# Lower end of each version's theta range; the range is [low, low + pi) for the long-edge versions.
_LE_LOW = {"le90": -math.pi / 2, "le135": -math.pi / 4}


# ----------------------------------------------------------------------------------------------- angles
def _norm_angle_t(theta: torch.Tensor, version: str) -> torch.Tensor:
    if version == "oc":
        return theta
    low = _LE_LOW[version]
    out = torch.remainder(theta - low, math.pi) + low
    # remainder(-1e-20, pi) rounds to exactly pi, which would land on the excluded upper end.
    return torch.where(out >= low + math.pi, out - math.pi, out)


def norm_angle(theta, version: str):
    """mmrotate ``norm_angle``: wrap theta into the version's range ('oc' returns theta unchanged).

    Only the angle is touched, so for le90/le135 this is the same rectangle only when w >= h already;
    use :func:`regularize_obb` to map a whole obb.
    """
    check_version(version)
    if isinstance(theta, (int, float)):
        return float(_norm_angle_t(torch.tensor(float(theta), dtype=torch.float64), version))
    t = to_tensor(theta, dtype=compute_dtype(theta), name="theta")
    return restore(_norm_angle_t(t, version), is_torch(theta), result_dtype(theta))


def _regularize_t(w, h, theta, version: str):
    """(w, h, theta) of any rectangle -> the same rectangle in ``version``; tensors of equal shape."""
    if version == "oc":
        # Step theta by quarter turns into (0, pi/2]; each odd quarter turn swaps the roles of w and h.
        k = torch.ceil(theta / HALF_PI) - 1
        t = theta - k * HALF_PI
        low, high = t <= 0, t > HALF_PI  # rounding can leave t one ulp outside (0, pi/2]
        t = torch.where(low, t + HALF_PI, torch.where(high, t - HALF_PI, t))
        k = torch.where(low, k - 1, torch.where(high, k + 1, k))
        swap = torch.remainder(k, 2) != 0
        return torch.where(swap, h, w), torch.where(swap, w, h), t
    swap = w < h
    theta = torch.where(swap, theta + HALF_PI, theta)
    return torch.where(swap, h, w), torch.where(swap, w, h), _norm_angle_t(theta, version)


def regularize_obb(obbs, version: str = "le90"):
    """Any (..., 5) obbs (any w/h order, any theta) -> the same rectangles written in ``version``."""
    check_version(version)
    check_last_dim(obbs, 5, "obbs", "regularize_obb")
    t = to_tensor(obbs, dtype=compute_dtype(obbs), name="obbs")
    w, h, a = _regularize_t(t[..., 2], t[..., 3], t[..., 4], version)
    out = torch.stack([t[..., 0], t[..., 1], w, h, a], dim=-1)
    return restore(out, is_torch(obbs), result_dtype(obbs))


def convert_version(obbs, src: str, dst: str):
    """Rewrite (..., 5) obbs given in version ``src`` in version ``dst``; the rectangles do not change."""
    check_version(src, "src")
    check_version(dst, "dst")
    return regularize_obb(obbs, dst)


# ------------------------------------------------------------------------------------- polygon -> obb
def _poly2obb_t(polys: torch.Tensor, version: str) -> torch.Tensor:
    """Edge-based conversion of mmrotate's torch ``poly2obb_le90/le135`` on (..., 8)."""
    p1, p2, p3, p4 = polys[..., 0:2], polys[..., 2:4], polys[..., 4:6], polys[..., 6:8]
    edge1 = torch.linalg.vector_norm(p2 - p1, dim=-1)
    edge2 = torch.linalg.vector_norm(p3 - p2, dim=-1)
    angle1 = torch.atan2(p2[..., 1] - p1[..., 1], p2[..., 0] - p1[..., 0])
    angle2 = torch.atan2(p4[..., 1] - p1[..., 1], p4[..., 0] - p1[..., 0])
    # The long side gives the angle; on a tie mmrotate takes p1->p4 (``edge1 > edge2`` is strict).
    theta = torch.where(edge1 > edge2, angle1, angle2)
    w, h = torch.maximum(edge1, edge2), torch.minimum(edge1, edge2)
    centre = (p1 + p3) / 2
    w, h, theta = _regularize_t(w, h, theta, version)
    return torch.stack([centre[..., 0], centre[..., 1], w, h, theta], dim=-1)


def poly2obb(polys, version: str = "le90"):
    """(..., 8) quadrilaterals ``x1 y1 .. x4 y4`` -> (..., 5) obbs, edge-based (mmrotate torch method).

    w = the longer of |p1p2|, |p2p3|, h = the shorter, theta = direction of the long side (p1->p2, or
    p1->p4 when |p1p2| <= |p2p3|), centre = midpoint of p1 and p3. Exact for rectangles; for other
    quadrilaterals use :func:`poly2obb_min_area`. For 'oc' the centre is also the p1-p3 midpoint
    (mmrotate's torch 'oc' uses the vertex mean; the two agree on parallelograms).
    """
    check_version(version)
    check_last_dim(polys, 8, "polys", "poly2obb")
    t = to_tensor(polys, dtype=compute_dtype(polys), name="polys")
    return restore(_poly2obb_t(t, version), is_torch(polys), result_dtype(polys))


def _min_rect_from_dirs(pts: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Smallest-area rectangle with one side along one of the candidate directions.

    pts: (B, K, 2) points; dirs: (B, D, 2) directions (zero vectors are ignored).
    Returns (B, 5) raw (cx, cy, w, h, theta) with w along the chosen direction.
    """
    length = torch.linalg.vector_norm(dirs, dim=-1)  # (B, D)
    ok = length > 0
    u = dirs / torch.where(ok, length, torch.ones_like(length))[..., None]
    u = torch.where(ok[..., None], u, torch.tensor([1.0, 0.0], dtype=u.dtype, device=u.device))
    v = torch.stack([-u[..., 1], u[..., 0]], dim=-1)
    pu = torch.einsum("bkc,bdc->bdk", pts, u)  # (B, D, K) projections on the side direction
    pv = torch.einsum("bkc,bdc->bdk", pts, v)
    umin, umax = pu.min(-1).values, pu.max(-1).values
    vmin, vmax = pv.min(-1).values, pv.max(-1).values
    area = (umax - umin) * (vmax - vmin)
    area = torch.where(ok, area, torch.full_like(area, math.inf))
    # Quadrilaterals with integer corners often have two different rectangles of exactly equal area;
    # taking the first candidate within a relative 1e-9 of the minimum (not the rounding-noise argmin)
    # makes the choice the same on every backend. cv2 may pick the other one.
    near_min = area <= area.min(-1, keepdim=True).values * (1 + 1e-9)
    best = near_min.to(torch.uint8).argmax(dim=-1, keepdim=True)

    def pick(x):
        return x.gather(-1, best)[..., 0]

    best2 = best[..., None].expand(-1, -1, 2)
    uu, vv = u.gather(1, best2)[:, 0], v.gather(1, best2)[:, 0]
    cu, cv = (pick(umin) + pick(umax)) / 2, (pick(vmin) + pick(vmax)) / 2
    centre = cu[:, None] * uu + cv[:, None] * vv
    theta = torch.atan2(uu[:, 1], uu[:, 0])
    return torch.stack([centre[:, 0], centre[:, 1], pick(umax) - pick(umin), pick(vmax) - pick(vmin), theta], -1)


def _min_area_single(points: np.ndarray) -> np.ndarray:
    """Min-area rectangle of one (K, 2) float64 point set, via its convex hull edges."""
    pts = points - points.mean(0)
    try:
        from scipy.spatial import ConvexHull, QhullError

        hull = pts[ConvexHull(pts).vertices]
        dirs = np.roll(hull, -1, axis=0) - hull
    except (QhullError, ValueError):  # fewer than 3 points or all collinear: the line through them
        far = np.argmax(np.linalg.norm(pts - pts[0], axis=1))
        dirs = (pts[far] - pts[0])[None]
    rect = _min_rect_from_dirs(torch.from_numpy(pts)[None], torch.from_numpy(dirs)[None])[0].numpy()
    rect[:2] += points.mean(0)
    return rect


# Up to this many points the batched all-pairs search is cheap; beyond it, go through the convex hull.
_MAX_PAIRWISE_POINTS = 16


def poly2obb_min_area(points, version: str = "le90"):
    """Minimum-area enclosing rectangle (``cv2.minAreaRect`` semantics, computed in float64) as obbs.

    Args:
        points: (..., 2K) array of K points per item (K=4 for DOTA quadrilaterals; any order, convex or
            not), or a list of (K_i, 2) point sets of different sizes.
        version: angle version of the output.

    Returns:
        (..., 5) obbs (a (len, 5) array for a list input). Sizes are not filtered: apply
        :func:`valid_obb_mask` to drop w < 2 or h < 2 boxes as mmrotate's ``poly2obb_np`` does.

    The optimal rectangle has a side along a convex-hull edge; every pair of points is a candidate
    direction, which includes all hull edges, so the batched search is exact. Unlike cv2 (float32), the
    result keeps float64 precision. A set of identical points gives w = h = 0, theta normalised from 0.
    """
    check_version(version)
    if isinstance(points, (list, tuple)) and len(points) and np.ndim(points[0]) == 2:
        rects = [_min_area_single(np.asarray(p, dtype=np.float64).reshape(-1, 2)) for p in points]
        raw = torch.from_numpy(np.stack(rects))
        w, h, a = _regularize_t(raw[:, 2], raw[:, 3], raw[:, 4], version)
        return torch.stack([raw[:, 0], raw[:, 1], w, h, a], -1).numpy()
    shape = tuple(np.shape(points))
    if len(shape) == 0 or shape[-1] < 2 or shape[-1] % 2:
        raise ValueError(f"poly2obb_min_area: points must have shape (..., 2K), got {shape}")
    t = to_tensor(points, dtype=torch.float64, name="points")
    k = shape[-1] // 2
    pts = t.reshape(-1, k, 2)
    mean = pts.mean(1, keepdim=True)
    pts = pts - mean  # centring keeps the projections well conditioned for large image coordinates
    if k <= _MAX_PAIRWISE_POINTS:
        i, j = torch.triu_indices(k, k, offset=1, device=pts.device)
        dirs = pts[:, j] - pts[:, i]
        if k == 1:
            dirs = torch.zeros(pts.shape[0], 1, 2, dtype=pts.dtype, device=pts.device)
        raw = _min_rect_from_dirs(pts, dirs)
        raw[:, :2] += mean[:, 0]
    else:
        raw = torch.from_numpy(np.stack([_min_area_single(p) for p in (pts + mean).cpu().numpy()])
                               if len(pts) else np.zeros((0, 5))).to(pts.device)
    w, h, a = _regularize_t(raw[:, 2], raw[:, 3], raw[:, 4], version)
    out = torch.stack([raw[:, 0], raw[:, 1], w, h, a], -1).reshape(*shape[:-1], 5)
    return restore(out, is_torch(points), result_dtype(points))


def valid_obb_mask(obbs, min_size: float = 2.0):
    """(...,) bool: True where w >= min_size and h >= min_size (mmrotate drops w < 2 or h < 2)."""
    check_last_dim(obbs, 5, "obbs", "valid_obb_mask")
    if is_torch(obbs):
        return (obbs[..., 2] >= min_size) & (obbs[..., 3] >= min_size)
    obbs = np.asarray(obbs)
    return (obbs[..., 2] >= min_size) & (obbs[..., 3] >= min_size)


# ------------------------------------------------------------------------------------- obb -> polygon
def _obb2poly_t(obbs: torch.Tensor) -> torch.Tensor:
    c = obbs[..., 0:2]
    cos, sin = torch.cos(obbs[..., 4]), torch.sin(obbs[..., 4])
    half_w = (obbs[..., 2] / 2)[..., None] * torch.stack([cos, sin], -1)
    half_h = (obbs[..., 3] / 2)[..., None] * torch.stack([-sin, cos], -1)
    pts = [c - half_w - half_h, c + half_w - half_h, c + half_w + half_h, c - half_w + half_h]
    return torch.cat(pts, dim=-1)


def obb2poly(obbs, version: str = "le90"):
    """(..., 5) obbs -> (..., 8) corners in mmrotate 0.x order.

    p1 = c - w^ - h^, p2 = c + w^ - h^, p3 = c + w^ + h^, p4 = c - w^ + h^ (TL, TR, BR, BL at theta = 0,
    clockwise on screen). The formula is the same for every version; ``version`` is checked only so that
    call sites state which convention their obbs are in.
    """
    check_version(version)
    check_last_dim(obbs, 5, "obbs", "obb2poly")
    t = to_tensor(obbs, dtype=compute_dtype(obbs), name="obbs")
    return restore(_obb2poly_t(t), is_torch(obbs), result_dtype(obbs))


def get_best_begin_point(polys):
    """Cyclically rotate each polygon's point order for DOTA submission (mmrotate/devkit rule).

    The start point is chosen so that the summed distance of (p1, p2, p3, p4) to the axis-aligned box
    corners (xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax) is smallest (first one on ties). The
    direction of travel is kept. Input (..., 8 + E): extra columns (e.g. a score) pass through unchanged.
    """
    shape = tuple(np.shape(polys))
    if len(shape) == 0 or shape[-1] < 8:
        raise ValueError(f"get_best_begin_point: polys must have shape (..., 8 + extra), got {shape}")
    t = to_tensor(polys, dtype=compute_dtype(polys), name="polys")
    pts = t[..., :8].reshape(*shape[:-1], 4, 2)
    lo, hi = pts.min(-2).values, pts.max(-2).values
    target = torch.stack([lo, torch.stack([hi[..., 0], lo[..., 1]], -1), hi,
                          torch.stack([lo[..., 0], hi[..., 1]], -1)], dim=-2)
    cands = torch.stack([torch.roll(pts, -s, dims=-2) for s in range(4)], dim=-3)  # (..., 4, 4, 2)
    force = torch.linalg.vector_norm(cands - target[..., None, :, :], dim=-1).sum(-1)  # (..., 4)
    best = force.argmin(-1)
    idx = best[..., None, None, None].expand(*best.shape, 1, 4, 2)
    chosen = cands.gather(-3, idx)[..., 0, :, :].reshape(*shape[:-1], 8)
    out = torch.cat([chosen, t[..., 8:]], dim=-1)
    return restore(out, is_torch(polys), result_dtype(polys))


# ------------------------------------------------------------------------------------ axis-aligned box
def obb2hbb(obbs):
    """(..., 5) obbs -> (..., 4) enclosing axis-aligned boxes ``x1 y1 x2 y2``."""
    check_last_dim(obbs, 5, "obbs", "obb2hbb")
    t = to_tensor(obbs, dtype=compute_dtype(obbs), name="obbs")
    cos, sin = torch.cos(t[..., 4]).abs(), torch.sin(t[..., 4]).abs()
    w, h = t[..., 2].abs() / 2, t[..., 3].abs() / 2
    dx, dy = w * cos + h * sin, w * sin + h * cos
    out = torch.stack([t[..., 0] - dx, t[..., 1] - dy, t[..., 0] + dx, t[..., 1] + dy], -1)
    return restore(out, is_torch(obbs), result_dtype(obbs))


def poly2hbb(polys):
    """(..., 8) polygons -> (..., 4) enclosing axis-aligned boxes ``x1 y1 x2 y2``."""
    check_last_dim(polys, 8, "polys", "poly2hbb")
    t = to_tensor(polys, dtype=compute_dtype(polys), name="polys")
    xs, ys = t[..., 0::2], t[..., 1::2]
    out = torch.stack([xs.min(-1).values, ys.min(-1).values, xs.max(-1).values, ys.max(-1).values], -1)
    return restore(out, is_torch(polys), result_dtype(polys))
