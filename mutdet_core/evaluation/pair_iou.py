"""Decision-exact quadrilateral IoU for many pairs: a fast convex path plus the devkit port where it matters.

The devkit port (:mod:`.polyiou`) reproduces ``polyiou.iou_poly`` bit for bit but costs ~80 us per pair in
numpy (16 triangle clippings). Evaluation and NMS never use an IoU value itself, only comparisons:
``iou > thr`` (or ``>=``, ``<=``) and the ``argmax`` over ground truths. So every pair first gets a fast IoU:

- Both quads convex (after orienting them counter-clockwise) and non-degenerate: Sutherland-Hodgman
  clipping of P by the four edges of Q, in coordinates centred on the pair (small numbers, small rounding).
- Anything else (concave or self-intersecting quads, zero-area quads): the devkit port directly, because
  for those the devkit's signed decomposition is the definition.

together with ``tol``, a bound on ``|fast - devkit|``: the devkit fans both quads from the *image origin*,
so its rounding grows with the squared absolute coordinates R^2 (~64 eps R^2 px^2 of area), and its 1e-8
tolerances move points: merging points closer than 1e-8 px changes the area by ~1e-8 L, and a side
test ``|cross| <= 1e-8`` on a cut line of length l (an edge, or a ray of length ~R from the origin)
misplaces a vertex by up to 1e-8 / l along fan triangles ~R long, i.e. ~1e-8 R / l of area.
``tol = 1e-10 + (1e-12 R^2 + 1e-6 (L + 1) + 1e-6 R (1 + 1 / l_min)) / union`` covers these with margins of
~50-100x (L = the pair's extent, l_min = its shortest non-zero edge). Callers then recompute with the
port every pair whose decision could flip within ``tol`` (:func:`refine_near`, :func:`refine_pairs`), so
the decisions equal the devkit's while the port runs on a tiny fraction of pairs (exact ties, IoU = 0.5
exactly on integer coordinates, and the like: 26 of 95k pairs in bench/bench_evaluation.py).

Shapes: ``p``, ``q`` are (K, 8) float64 ``x1 y1 .. x4 y4``; results (K,).
"""
from __future__ import annotations

import numpy as np

from .polyiou import iou_poly_pairs

PAIR_CHUNK = 1 << 15


def _shoelace(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 0.5 * (x * np.roll(y, -1, axis=1) - y * np.roll(x, -1, axis=1)).sum(axis=1)


def _orient_ccw(x, y):
    """Reverse the quads with negative area; returns (x, y, |area|)."""
    area = _shoelace(x, y)
    rev = area < 0
    return np.where(rev[:, None], x[:, ::-1], x), np.where(rev[:, None], y[:, ::-1], y), np.abs(area)


def _convex(x, y) -> np.ndarray:
    """True for counter-clockwise quads whose four turns are all left (or straight)."""
    ex, ey = np.roll(x, -1, axis=1) - x, np.roll(y, -1, axis=1) - y
    turn = ex * np.roll(ey, -1, axis=1) - ey * np.roll(ex, -1, axis=1)
    return (turn >= 0).all(axis=1)


def _clip(x, y, ax, ay, bx, by):
    """Clip (K, V) polygons (padded by repeating the last point) to the left of a->b; (K, V') out."""
    k, v = x.shape
    ex, ey = (bx - ax)[:, None], (by - ay)[:, None]
    side = ex * (y - ay[:, None]) - ey * (x - ax[:, None])
    inside = side >= 0
    nxt = np.append(np.arange(1, v), 0)
    side_n = side[:, nxt]
    cross = inside != inside[:, nxt]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(cross, side / (side - side_n), 0.0)
    cx = x + t * (x[:, nxt] - x)
    cy = y + t * (y[:, nxt] - y)
    # Output per input point i: the point (if inside), then the crossing on edge i (if any). Scatter
    # both into a (K, width + 1) buffer whose last column swallows the slots that emit nothing.
    ins = inside.astype(np.int64)
    step = ins + cross
    end = np.cumsum(step, axis=1)
    count = end[:, -1]
    width = max(int(count.max(initial=0)), 1)
    row = (np.arange(k) * (width + 1))[:, None]
    dest_point = np.where(inside, row + end - step, row + width).ravel()
    dest_cross = np.where(cross, row + end - step + ins, row + width).ravel()
    ox, oy = np.empty(k * (width + 1)), np.empty(k * (width + 1))
    ox[dest_point], oy[dest_point] = x.ravel(), y.ravel()
    ox[dest_cross], oy[dest_cross] = cx.ravel(), cy.ravel()
    ox, oy = ox.reshape(k, width + 1)[:, :width], oy.reshape(k, width + 1)[:, :width]
    # Pad with the last kept point: zero-length edges add nothing to the area and never cross a line.
    last = np.maximum(count - 1, 0)[:, None]
    pad = np.arange(width)[None, :] > last
    ox = np.where(pad, np.take_along_axis(ox, last, axis=1), ox)
    oy = np.where(pad, np.take_along_axis(oy, last, axis=1), oy)
    empty = count == 0
    ox[empty], oy[empty] = 0.0, 0.0
    return ox, oy


def _fast_chunk(p: np.ndarray, q: np.ndarray):
    allx = np.concatenate([p[:, 0::2], q[:, 0::2]], axis=1)
    ally = np.concatenate([p[:, 1::2], q[:, 1::2]], axis=1)
    lo_x, hi_x, lo_y, hi_y = allx.min(1), allx.max(1), ally.min(1), ally.max(1)
    ref_x, ref_y = (lo_x + hi_x) / 2, (lo_y + hi_y) / 2
    px, py, area_p = _orient_ccw(p[:, 0::2] - ref_x[:, None], p[:, 1::2] - ref_y[:, None])
    qx, qy, area_q = _orient_ccw(q[:, 0::2] - ref_x[:, None], q[:, 1::2] - ref_y[:, None])
    extent = np.hypot(hi_x - lo_x, hi_y - lo_y)
    degenerate = (area_p <= 1e-9 * extent**2) | (area_q <= 1e-9 * extent**2)
    simple = _convex(px, py) & _convex(qx, qy) & ~degenerate
    cx, cy = px, py
    for j in range(4):
        k = (j + 1) % 4
        cx, cy = _clip(cx, cy, qx[:, j], qy[:, j], qx[:, k], qy[:, k])
    inter = np.clip(_shoelace(cx, cy), 0.0, np.minimum(area_p, area_q))
    union = area_p + area_q - inter
    edges = np.concatenate([np.hypot(np.roll(px, -1, 1) - px, np.roll(py, -1, 1) - py),
                            np.hypot(np.roll(qx, -1, 1) - qx, np.roll(qy, -1, 1) - qy)], axis=1)
    shortest = np.where(edges > 0, edges, np.inf).min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
        radius = np.maximum(np.abs(allx).max(1), np.abs(ally).max(1)) + 1.0
        error = (1e-12 * radius**2 + 1e-6 * (extent + 1.0)  # rounding of the origin fan; 1e-8 point merging
                 + 1e-6 * radius * (1.0 + 1.0 / np.maximum(shortest, 1e-12)))  # 1e-8 side tests on cut lines
        tol = 1e-10 + error / np.where(union > 0, union, 1.0)
    return iou, tol, simple


def fast_iou_pairs(p, q):
    """Fast IoU with its error bound. Returns ``(iou, tol, exact)`` (K,) arrays: ``exact`` is True where
    the value already *is* the devkit's (non-convex or degenerate pairs, computed by the port; tol 0)."""
    p = np.asarray(p, dtype=np.float64).reshape(-1, 8)
    q = np.asarray(q, dtype=np.float64).reshape(-1, 8)
    iou, tol, simple = np.empty(len(p)), np.empty(len(p)), np.empty(len(p), dtype=bool)
    for start in range(0, len(p), PAIR_CHUNK):
        sl = slice(start, start + PAIR_CHUNK)
        iou[sl], tol[sl], simple[sl] = _fast_chunk(p[sl], q[sl])
    exact = ~simple
    if exact.any():
        iou[exact] = iou_poly_pairs(p[exact], q[exact])
        tol[exact] = 0.0
    return iou, tol, exact


def refine_near(iou, tol, exact, p, q, thresholds) -> None:
    """Replace, in place, the fast IoU by the devkit's for pairs within ``tol`` of any threshold."""
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or iou.size == 0:
        return
    near = ~exact & (np.abs(iou[:, None] - thresholds[None, :]) <= tol[:, None]).any(axis=1)
    if near.any():
        idx = np.flatnonzero(near)
        iou[idx] = iou_poly_pairs(np.asarray(p)[idx], np.asarray(q)[idx])
        tol[idx] = 0.0
        exact[idx] = True


def pair_iou(p, q, thresholds=(), exact: bool = False):
    """IoU of (K, 8) pairs whose comparisons with ``thresholds`` equal the devkit's.

    Args:
        p, q: (K, 8) quads, in the devkit's argument order (ground truth first in evaluation, kept box
            first in NMS): it decides the last bit of the exact values.
        thresholds: values the caller compares against.
        exact: compute every pair with the devkit port (slow; for verification).

    Returns:
        ``(iou, tol, is_exact)``: (K,) values, error bounds (0 where exact) and the exact flags, for callers
        that need to refine further (argmax ties: :func:`refine_pairs`).
    """
    p = np.asarray(p, dtype=np.float64).reshape(-1, 8)
    q = np.asarray(q, dtype=np.float64).reshape(-1, 8)
    if exact:
        return iou_poly_pairs(p, q), np.zeros(len(p)), np.ones(len(p), dtype=bool)
    iou, tol, is_exact = fast_iou_pairs(p, q)
    refine_near(iou, tol, is_exact, p, q, thresholds)
    return iou, tol, is_exact


def refine_pairs(idx, iou, tol, is_exact, p, q) -> None:
    """Recompute the pairs ``idx`` with the devkit port, in place (skipping those already exact)."""
    idx = np.asarray(idx, dtype=np.int64)
    idx = idx[~is_exact[idx]]
    if idx.size:
        iou[idx] = iou_poly_pairs(np.asarray(p)[idx], np.asarray(q)[idx])
        tol[idx] = 0.0
        is_exact[idx] = True
