"""Sliding windows and window-object assignment, with the semantics of mmrotate's ``img_split.py``.

MutDet tiled DOTA with mmrotate's splitter (800 px windows, gap 200), so a tile store written here must
contain exactly the tiles, objects and difficulty flags that splitter writes. The arithmetic below keeps
the splitter's dtypes on purpose: polygons are float32 (its loader), polygon areas are float32 and
intersections float64 (its ``bbox_overlaps_iof``). Changing either moves a handful of objects across the
``IoF < 1`` line and changes their difficulty from 0 to 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np
import shapely

from .params import TilingParams  # its home is shapely-free: the DAG-time config check uses it too

EPS_IMG_RATE = 0.01


def sliding_windows(width: int, height: int, params: TilingParams) -> np.ndarray:
    """Windows ``(K, 4)`` int64 ``x_start, y_start, x_stop, y_stop`` for one image.

    x-major order (all y for the first x, then the next x), last window shifted inward, windows whose
    in-image area fraction is <= ``img_rate_thr`` dropped (if none passes, those within 0.01 of the best
    are kept). Windows may extend past the image only when the image is smaller than a window.
    """
    windows = []
    for size, gap in params.window_sizes():
        step = size - gap
        x_num = 1 if width <= size else ceil((width - size) / step + 1)
        x_start = [step * i for i in range(x_num)]
        if len(x_start) > 1 and x_start[-1] + size > width:
            x_start[-1] = width - size
        y_num = 1 if height <= size else ceil((height - size) / step + 1)
        y_start = [step * i for i in range(y_num)]
        if len(y_start) > 1 and y_start[-1] + size > height:
            y_start[-1] = height - size
        start = np.array([(x, y) for x in x_start for y in y_start], dtype=np.int64)
        windows.append(np.concatenate([start, start + size], axis=1))
    windows = np.concatenate(windows, axis=0)

    inside = windows.copy()
    inside[:, 0::2] = np.clip(inside[:, 0::2], 0, width)
    inside[:, 1::2] = np.clip(inside[:, 1::2], 0, height)
    img_areas = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])
    win_areas = (windows[:, 2] - windows[:, 0]) * (windows[:, 3] - windows[:, 1])
    rates = img_areas / win_areas
    if not (rates > params.img_rate_thr).any():
        rates[abs(rates - rates.max()) < EPS_IMG_RATE] = 1
    return windows[rates > params.img_rate_thr]


def window_iof(polygons: np.ndarray, windows: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """IoF ``(N, K)`` = area(polygon ∩ window) / area(polygon), mmrotate's ``bbox_overlaps_iof``.

    Args:
        polygons: ``(N, 8)`` float32 polygons (image pixels).
        windows: ``(K, 4)`` int windows ``x1 y1 x2 y2``.
    Zero-area polygons get IoF 0 (their area is clipped to ``eps``), so they are never kept.
    """
    n, k = len(polygons), len(windows)
    if n * k == 0:
        return np.zeros((n, k), dtype=np.float32)
    polygons = np.asarray(polygons, dtype=np.float32)
    pts = polygons.reshape(n, 4, 2)
    hbb = np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)[:, None, :]
    lt = np.maximum(hbb[..., :2], windows[..., :2])
    rb = np.minimum(hbb[..., 2:], windows[..., 2:])
    wh = np.clip(rb - lt, 0, np.inf)
    candidates = np.nonzero(wh[..., 0] * wh[..., 1])

    geoms = shapely.polygons(pts.astype(np.float64))
    l, t, r, b = (windows[:, i] for i in range(4))
    win_geoms = shapely.polygons(np.stack([l, t, r, t, r, b, l, b], axis=-1).reshape(k, 4, 2).astype(np.float64))
    overlaps = np.zeros((n, k))
    if len(candidates[0]):
        inter = shapely.intersection(geoms[candidates[0]], win_geoms[candidates[1]])
        overlaps[candidates] = shapely.area(inter)
    areas = np.clip(shapely.area(geoms).astype(np.float32)[:, None], eps, np.inf)
    return overlaps / areas


@dataclass
class WindowObjects:
    """Objects assigned to one window: indices into the image's objects, and whether each is truncated."""

    indices: np.ndarray  # (n,) int64
    truncated: np.ndarray  # (n,) bool, IoF < 1


def assign_objects(polygons: np.ndarray, windows: np.ndarray, iof_thr: float) -> list[WindowObjects]:
    """Objects kept in each window: IoF >= ``iof_thr``; the polygon is translated later, never clipped."""
    iofs = window_iof(polygons, windows)
    out = []
    for i in range(len(windows)):
        keep = np.nonzero(iofs[:, i] >= iof_thr)[0]
        out.append(WindowObjects(indices=keep.astype(np.int64), truncated=iofs[keep, i] < 1))
    return out


def tile_name(image_id: str, window) -> str:
    """mmrotate's patch name ``{id}__{window size}__{x}___{y}``."""
    x_start, y_start, x_stop, _ = (int(v) for v in window)
    return f"{image_id}__{x_stop - x_start}__{x_start}___{y_start}"


def parse_tile_name(name: str) -> tuple[str, int, int, int]:
    """``(image_id, size_or_rate_field, x, y)`` from ``{id}__{size}__{x}___{y}``.

    Also accepts the DOTA devkit's ``{id}__{rate}__{x}___{y}``; the middle field is then a rate such as
    ``1`` or ``0.5`` and is returned as written when it is an integer (callers that need the offset only
    use x and y).
    """
    try:
        head, y = name.rsplit("___", 1)
        image_id, middle, x = head.rsplit("__", 2)
        return image_id, int(float(middle)) if float(middle).is_integer() else float(middle), int(x), int(y)
    except ValueError:
        raise ValueError(f"{name!r} is not a tile name of the form <image>__<size>__<x>___<y>") from None
