"""Quadrilateral IoU exactly as the DOTA devkit's ``polyiou`` extension computes it, vectorised.

The official Task1 evaluation (``dota_evaluation_task1.py``) and patch merging (``ResultMerge*.py``) call
``polyiou.iou_poly(p, q)``, a small C++ routine. Reproducing their results *exactly* means reproducing its
floating-point results bit for bit, because detections whose IoU lands on the threshold (integer
coordinates make IoU = 0.5 exactly reachable) are decided by the last bits. So this module performs the
same IEEE double operations in the same order as the C++ code, only for many pairs at once:

- ``area(P)``: shoelace sum accumulated term by term from point 0, then halved.
- Each quad with negative area is reversed in place (the C++ mutates its argument, so the union below is
  computed on the reversed point order, which can differ from -area in the last bit).
- Intersection: the two quads are fanned into the 4 triangles (origin, p_i, p_i+1) with signed area; the
  16 signed triangle-triangle intersections are summed in (i, j) order. Each triangle pair is
  intersected by cutting triangle (o, a, b) with the three lines o->c, c->d, d->o (``polygon_cut``: keep
  the points strictly left of the line, insert line crossings where the side changes, drop consecutive
  points equal within 1e-8 and trailing points equal to the first).
- ``iou = inter / (|area(P)| + |area(Q)| - inter)``.

Because it is a signed decomposition, non-convex and even self-intersecting quadrilaterals get the
devkit's value (for a bow-tie: lobes weighted by winding number), not shapely's.

One deviation: when ``polygon_cut`` meets an edge whose two end points are both within 1e-8 of the cut
line but on "different sides" under the 1e-8 tolerance, the C++ ``lineCross`` returns without writing and
the polygon gets a stale point from a static buffer (undefined in practice). We insert the edge's first
point instead. It needs an edge lying along the cut line to within ~1e-8 px^2 of cross product and
straddling the tolerance band; no fixture hits it.

Shapes: pairs are ``(K, 8)`` float64 arrays ``x1 y1 ... x4 y4``; everything returns ``(K,)``.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-8  # polyiou.cpp ``eps``
PAIR_CHUNK = 1 << 13  # pairs per batch: 16 triangle pairs each, ~30 MB of temporaries


def _sig(d: np.ndarray) -> np.ndarray:
    """``sig(d) = (d > eps) - (d < -eps)`` as int8; NaN gives 0 like the C++."""
    return (d > EPS).astype(np.int8) - (d < -EPS).astype(np.int8)


def _same_point(x0, y0, x1, y1) -> np.ndarray:
    """``Point::operator==``: both coordinate differences within eps."""
    return (_sig(x0 - x1) == 0) & (_sig(y0 - y1) == 0)


def _next_index(n: np.ndarray, width: int) -> np.ndarray:
    """(B, W) index of point i+1 with the C++ wrap ``p[n] = p[0]``."""
    col = np.arange(width)
    return np.where(col[None, :] + 1 < n[:, None], col[None, :] + 1, 0)


def polygon_area(x: np.ndarray, y: np.ndarray, n: np.ndarray | None = None) -> np.ndarray:
    """Signed area of (B, W) padded polygons with ``n`` (B,) points, devkit ``area()``.

    The sum runs sequentially over the points (not numpy's pairwise sum) so that it rounds like the C++
    loop; padding terms are exact zeros, which leave the running sum unchanged.
    """
    b, w = x.shape
    if n is None:
        n = np.full(b, w, dtype=np.int64)
    nxt = _next_index(n, w)
    xn = np.take_along_axis(x, nxt, axis=1)
    yn = np.take_along_axis(y, nxt, axis=1)
    terms = x * yn - y * xn
    terms = np.where(np.arange(w)[None, :] < n[:, None], terms, 0.0)
    res = np.zeros(b)
    for i in range(w):
        res = res + terms[:, i]
    return res / 2.0


def _compact(mask: np.ndarray, *arrays: np.ndarray):
    """Move the True entries of each row to the front, keeping their order. Returns (count, arrays...)."""
    count = mask.sum(axis=1)
    width = max(int(count.max(initial=0)), 1)
    order = np.argsort(~mask, axis=1, kind="stable")[:, :width]
    return (count,) + tuple(np.take_along_axis(a, order, axis=1) for a in arrays)


def _polygon_cut(x, y, n, ax, ay, bx, by):
    """Keep the part of each polygon left of the directed line a->b (devkit ``polygon_cut``).

    x, y: (B, W) padded points; n: (B,) counts; a, b: (B,) line points. Returns the new (x, y, n).
    """
    b, w = x.shape
    col = np.arange(w)[None, :]
    valid = col < n[:, None]
    nxt = _next_index(n, w)
    dx, dy = (bx - ax)[:, None], (by - ay)[:, None]
    cr = dx * (y - ay[:, None]) - (x - ax[:, None]) * dy  # cross(a, b, p_i)
    cr_next = np.take_along_axis(cr, nxt, axis=1)  # cross(a, b, p_i+1): same operands, same bits
    s, s_next = _sig(cr), _sig(cr_next)
    keep_point = valid & (s > 0)
    crossing = valid & (s != s_next)
    xn = np.take_along_axis(x, nxt, axis=1)
    yn = np.take_along_axis(y, nxt, axis=1)
    den = cr_next - cr
    with np.errstate(divide="ignore", invalid="ignore"):
        cx = (x * cr_next - xn * cr) / den
        cy = (y * cr_next - yn * cr) / den
    stale = _sig(den) == 0  # lineCross returns 0 without writing: see the module docstring
    cx = np.where(stale, x, cx)
    cy = np.where(stale, y, cy)
    # Output order of the C++ loop: for each i, the point itself (if kept), then the crossing (if any).
    slot_mask = np.stack([keep_point, crossing], axis=2).reshape(b, 2 * w)
    slot_x = np.stack([x, cx], axis=2).reshape(b, 2 * w)
    slot_y = np.stack([y, cy], axis=2).reshape(b, 2 * w)
    m, px, py = _compact(slot_mask, slot_x, slot_y)
    # Drop a point equal to its predecessor in the uncompacted list pp (not the previous kept one).
    col = np.arange(px.shape[1])[None, :]
    dup = np.zeros_like(px, dtype=bool)
    dup[:, 1:] = _same_point(px[:, 1:], py[:, 1:], px[:, :-1], py[:, :-1])
    keep = (col < m[:, None]) & ~dup
    n_new, px, py = _compact(keep, px, py)
    # while (n > 1 && p[n-1] == p[0]) n--;
    rows = np.arange(b)
    while True:
        last = np.maximum(n_new - 1, 0)
        drop = (n_new > 1) & _same_point(px[rows, last], py[rows, last], px[:, 0], py[:, 0])
        if not drop.any():
            break
        n_new = n_new - drop
    return px, py, n_new


def _triangle_intersection(ax, ay, bx, by, cx, cy, dx, dy) -> np.ndarray:
    """Signed intersection area of triangles (o, a, b) and (o, c, d), o the origin; all (B,) arrays."""
    zero = np.zeros_like(ax)
    s1 = _sig((ax - 0.0) * (by - 0.0) - (bx - 0.0) * (ay - 0.0))
    s2 = _sig((cx - 0.0) * (dy - 0.0) - (dx - 0.0) * (cy - 0.0))
    flip1, flip2 = s1 == -1, s2 == -1
    ax, bx = np.where(flip1, bx, ax), np.where(flip1, ax, bx)
    ay, by = np.where(flip1, by, ay), np.where(flip1, ay, by)
    cx, dx = np.where(flip2, dx, cx), np.where(flip2, cx, dx)
    cy, dy = np.where(flip2, dy, cy), np.where(flip2, cy, dy)
    px = np.stack([zero, ax, bx], axis=1)
    py = np.stack([zero, ay, by], axis=1)
    n = np.full(len(ax), 3, dtype=np.int64)
    px, py, n = _polygon_cut(px, py, n, zero, zero, cx, cy)
    px, py, n = _polygon_cut(px, py, n, cx, cy, dx, dy)
    px, py, n = _polygon_cut(px, py, n, dx, dy, zero, zero)
    res = np.abs(polygon_area(px, py, n))
    res = np.where(s1.astype(np.int16) * s2 == -1, -res, res)
    return np.where((s1 == 0) | (s2 == 0), 0.0, res)


def _oriented_points(polys: np.ndarray):
    """(K, 4) x and y in the order the devkit uses after ``intersectArea``: reversed when area < 0."""
    x, y = polys[:, 0::2], polys[:, 1::2]
    reverse = polygon_area(x, y) < 0
    x = np.where(reverse[:, None], x[:, ::-1], x)
    y = np.where(reverse[:, None], y[:, ::-1], y)
    return x, y


def _iou_chunk(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    k = len(p)
    x1, y1 = _oriented_points(p)
    x2, y2 = _oriented_points(q)
    i = np.repeat(np.arange(4), 4)  # (i, j) in the C++ loop order: i outer, j inner
    j = np.tile(np.arange(4), 4)
    tri = _triangle_intersection(
        x1[:, i].ravel(), y1[:, i].ravel(), x1[:, (i + 1) % 4].ravel(), y1[:, (i + 1) % 4].ravel(),
        x2[:, j].ravel(), y2[:, j].ravel(), x2[:, (j + 1) % 4].ravel(), y2[:, (j + 1) % 4].ravel(),
    ).reshape(k, 16)
    inter = np.zeros(k)
    for t in range(16):
        inter = inter + tri[:, t]
    union = np.abs(polygon_area(x1, y1)) + np.abs(polygon_area(x2, y2)) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def iou_poly_pairs(p, q) -> np.ndarray:
    """Devkit ``polyiou.iou_poly(p[k], q[k])`` for every k.

    Args:
        p, q: (K, 8) quadrilaterals. The argument order matters in the last bit, as in the devkit:
            evaluation passes (ground truth, detection), NMS passes (kept box, other box).

    Returns:
        (K,) float64. NaN where both quads have zero area and do not intersect (0/0), as the C++.
    """
    p = np.ascontiguousarray(p, dtype=np.float64).reshape(-1, 8)
    q = np.ascontiguousarray(q, dtype=np.float64).reshape(-1, 8)
    if p.shape != q.shape:
        raise ValueError(f"iou_poly_pairs: p has shape {p.shape} but q has {q.shape}")
    out = np.empty(len(p))
    for start in range(0, len(p), PAIR_CHUNK):
        stop = start + PAIR_CHUNK
        out[start:stop] = _iou_chunk(p[start:stop], q[start:stop])
    return out


def quad_areas(polys) -> np.ndarray:
    """(K,) absolute devkit area of (K, 8) quads."""
    polys = np.asarray(polys, dtype=np.float64).reshape(-1, 8)
    return np.abs(polygon_area(polys[:, 0::2], polys[:, 1::2]))


def hbb_overlap(p, q) -> np.ndarray:
    """The devkit's horizontal-box prefilter for pairs: ``True`` where the boxes' HBBs overlap with the
    devkit's ``+1`` pixel convention (``iw = max(ixmax - ixmin + 1, 0) > 0``, same for ``ih``).

    ``voc_eval`` computes the polygon IoU only for ground truths passing this test; a pair failing it has
    zero polygon intersection anyway, so the test changes nothing but speed, except that such a ground
    truth can never be the ``argmax``.
    """
    p = np.asarray(p, dtype=np.float64).reshape(-1, 8)
    q = np.asarray(q, dtype=np.float64).reshape(-1, 8)
    ixmin = np.maximum(p[:, 0::2].min(1), q[:, 0::2].min(1))
    iymin = np.maximum(p[:, 1::2].min(1), q[:, 1::2].min(1))
    ixmax = np.minimum(p[:, 0::2].max(1), q[:, 0::2].max(1))
    iymax = np.minimum(p[:, 1::2].max(1), q[:, 1::2].max(1))
    iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
    ih = np.maximum(iymax - iymin + 1.0, 0.0)
    return iw * ih > 0
