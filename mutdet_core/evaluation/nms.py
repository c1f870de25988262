"""Polygon NMS with the DOTA devkit's semantics (``ResultMerge*.py::py_cpu_nms_poly``), batched over groups.

Devkit, per group (an image of one class file):
    order = scores.argsort()[::-1]; keep the first box, drop every remaining box whose
    ``polyiou.iou_poly(kept, other) <= thresh`` is *false* (so IoU > thresh, and NaN, suppress), repeat.

We reproduce it exactly: the same processing order (:func:`.ordering.grouped_order` with ``'nms'``), the
same IoU bits where a comparison could flip (:mod:`.pair_iou`, kept box as first argument), the same
"not <= thresh" test. Instead of computing every remaining pair, only pairs whose horizontal boxes overlap
(devkit ``+1`` convention) are computed: any other pair has zero intersection, so its devkit IoU is 0 up to
rounding residue, which never exceeds a threshold in (0, 1), unless both quads are degenerate (|area| close
to 0, where the devkit divides residue by ~0); such pairs are computed with the port too.

Returns kept indices in processing order, which is also the order the devkit writes them.
"""
from __future__ import annotations

import numpy as np

from .ordering import grouped_order
from .pair_iou import pair_iou
from .polyiou import quad_areas

PAIR_BUDGET = 1 << 22


def _group_pairs(rank_group: np.ndarray, polys: np.ndarray):
    """Pairs ``(a, b)`` of ranks, ``a < b``, in the same group, that the devkit NMS could suppress.

    ``rank_group`` (N,) is the group of each rank (groups contiguous); ``polys`` (N, 8) in rank order.
    """
    n = len(polys)
    xmin, xmax = polys[:, 0::2].min(1), polys[:, 0::2].max(1)
    ymin, ymax = polys[:, 1::2].min(1), polys[:, 1::2].max(1)
    # Sweep along x inside each group: sort by (group, xmin); partners of item i are the next items of the
    # same group whose xmin is below xmax_i + 1 (+1 px slack = the devkit's "+ 1" convention; the exact
    # test follows). Offsetting x by group * span keeps groups apart in one sorted array.
    span = float(max(xmax.max() - xmin.min(), 1.0)) + 4.0
    key = rank_group * span + (xmin - xmin.min())
    by_x = np.argsort(key, kind="stable")
    sorted_key = key[by_x]
    end = np.searchsorted(sorted_key, (rank_group * span + (xmax - xmin.min()) + 2.0)[by_x], side="right")
    count = end - np.arange(n) - 1
    count = np.maximum(count, 0)
    out_a, out_b = [], []
    cum = np.cumsum(count)
    lo = 0
    while lo < n:
        base = cum[lo - 1] if lo else 0
        hi = max(int(np.searchsorted(cum, base + PAIR_BUDGET, side="right")), lo + 1)
        c = count[lo:hi]
        total = int(c.sum())
        if total:
            i = np.repeat(np.arange(lo, hi), c)
            j = i + 1 + (np.arange(total) - np.repeat(np.cumsum(c) - c, c))
            a, b = by_x[i], by_x[j]
            iw = np.maximum(np.minimum(xmax[a], xmax[b]) - np.maximum(xmin[a], xmin[b]) + 1.0, 0.0)
            ih = np.maximum(np.minimum(ymax[a], ymax[b]) - np.maximum(ymin[a], ymin[b]) + 1.0, 0.0)
            keep = (iw * ih > 0) & (rank_group[a] == rank_group[b])
            out_a.append(np.minimum(a, b)[keep])
            out_b.append(np.maximum(a, b)[keep])
        lo = hi
    pa = np.concatenate(out_a) if out_a else np.zeros(0, np.int64)
    pb = np.concatenate(out_b) if out_b else np.zeros(0, np.int64)
    # Degenerate quads: pair them with every other degenerate quad of the group (devkit 0/0 -> NaN).
    area = quad_areas(polys)
    radius2 = np.maximum(np.abs(polys[:, 0::2]).max(1), np.abs(polys[:, 1::2]).max(1)) ** 2 + 1.0
    degenerate = np.flatnonzero(area <= 1e-9 * radius2)
    if degenerate.size > 1:
        da, db = np.meshgrid(degenerate, degenerate, indexing="ij")
        same = (rank_group[da] == rank_group[db]) & (da < db)
        pa = np.concatenate([pa, da[same]])
        pb = np.concatenate([pb, db[same]])
        pairs = np.unique(np.stack([pa, pb], 1), axis=0)
        pa, pb = pairs[:, 0], pairs[:, 1]
    return pa, pb


def batched_poly_nms(polys, scores, groups, iou_thr: float, exact: bool = False) -> np.ndarray:
    """Devkit polygon NMS run independently in every group.

    Args:
        polys: (N, 8) quads; scores: (N,); groups: (N,) int group index (an image, a tile).
        iou_thr: a box is dropped when its IoU with a kept box is not ``<= iou_thr``; in (0, 1).
        exact: every candidate IoU by the devkit port (verification).

    Returns:
        (K,) int64 indices of the kept boxes: groups in ascending index order, each group's boxes in the
        devkit's processing order (descending score, ties as ``argsort()[::-1]``).
    """
    if not 0.0 < float(iou_thr) < 1.0:
        raise ValueError(f"NMS IoU threshold {iou_thr} is outside (0, 1)")
    polys = np.asarray(polys, dtype=np.float64).reshape(-1, 8)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    groups = np.asarray(groups, dtype=np.int64).reshape(-1)
    if not (len(polys) == len(scores) == len(groups)):
        raise ValueError(f"batched_poly_nms: {len(polys)} polygons, {len(scores)} scores, {len(groups)} groups")
    if len(polys) == 0:
        return np.zeros(0, dtype=np.int64)
    order = grouped_order(groups, scores, "nms")
    ranked = polys[order]
    a, b = _group_pairs(groups[order], ranked)
    suppress_a = suppress_b = np.zeros(0, np.int64)
    if a.size:
        iou, _, _ = pair_iou(ranked[a], ranked[b], (iou_thr,), exact=exact)
        with np.errstate(invalid="ignore"):
            hit = ~(iou <= iou_thr)  # the devkit keeps np.where(ovr <= thresh): NaN suppresses
        suppress_a, suppress_b = a[hit], b[hit]
    # Greedy pass in rank order over a CSR list of "rank a would suppress rank b".
    by_a = np.argsort(suppress_a, kind="stable")
    targets = suppress_b[by_a]
    bounds = np.searchsorted(suppress_a[by_a], np.arange(len(ranked) + 1))
    suppressed = np.zeros(len(ranked), dtype=bool)
    kept = []
    for r in range(len(ranked)):
        if suppressed[r]:
            continue
        kept.append(r)
        lo, hi = bounds[r], bounds[r + 1]
        if hi > lo:
            suppressed[targets[lo:hi]] = True
    return order[np.asarray(kept, dtype=np.int64)]


def poly_nms(polys, scores, iou_thr: float, exact: bool = False) -> np.ndarray:
    """Devkit polygon NMS of one group: kept indices in processing order."""
    return batched_poly_nms(polys, scores, np.zeros(len(np.asarray(scores).reshape(-1)), np.int64), iou_thr, exact)
