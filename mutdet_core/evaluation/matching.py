"""Detection-to-ground-truth matching of one class, for all its detections at once.

``voc_eval`` (DOTA devkit) and ``tpfp_default`` (mmrotate) both walk the detections in score order and,
for each one, look only at its *best* ground truth: ``jmax = argmax_g IoU(g, det)`` over the ground truths
of its image (no fallback to the second best). A detection is then

- ignored (neither TP nor FP) if its best overlap passes the threshold and ``jmax`` is an ignored object,
- TP if it passes and ``jmax`` is not yet covered by an earlier detection (it then covers it),
- FP otherwise.

Since ``jmax`` does not depend on which ground truths are covered, "TP" is simply "the first passing
detection, in matching order, with this ``jmax``": no per-detection loop is needed. :func:`best_overlaps`
computes ``(ovmax, jmax)`` for every detection from the candidate pairs (same image, horizontal boxes
overlapping under the devkit's ``+1`` rule, which is exactly the set of ground truths the devkit passes to
``polyiou``); :func:`assign` marks TP/FP for one threshold.

Arrays: detections ``(D,)``/``(D, 8)``; ground truths ``(G,)``/``(G, 8)``; pairs ``(P,)`` sorted by detection,
then by ground-truth index (the devkit's ``argmax`` returns the first maximum in ground-truth order).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pair_iou import pair_iou, refine_pairs

PAIR_BUDGET = 1 << 22  # detection x ground-truth pairs prefiltered per block (bounded memory)


@dataclass
class BestOverlaps:
    """Per detection: ``ovmax`` (D,) float64 (``-inf`` without candidates, NaN when a candidate's IoU is
    NaN, as ``np.max`` gives in the devkit) and ``jmax`` (D,) int64 ground-truth index (-1 when none)."""

    ovmax: np.ndarray
    jmax: np.ndarray
    num_pairs: int
    num_exact: int


def _hbb(polys: np.ndarray) -> np.ndarray:
    return np.stack([polys[:, 0::2].min(1), polys[:, 1::2].min(1), polys[:, 0::2].max(1), polys[:, 1::2].max(1)], 1)


def candidate_pairs(det_image, det_polys, gt_image, gt_polys):
    """Pairs (det, gt) of the same image whose horizontal boxes overlap by the devkit's rule
    ``max(ixmax - ixmin + 1, 0) * max(iymax - iymin + 1, 0) > 0``.

    Returns ``(det_idx, gt_idx)`` int64, sorted by detection then ground truth.
    """
    det_image = np.asarray(det_image, dtype=np.int64)
    gt_image = np.asarray(gt_image, dtype=np.int64)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(det_image) == 0 or len(gt_image) == 0:
        return empty
    gt_order = np.argsort(gt_image, kind="stable")
    num_images = int(max(det_image.max(), gt_image.max())) + 1
    counts = np.bincount(gt_image, minlength=num_images)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    per_det = counts[det_image]
    det_hbb, gt_hbb = _hbb(det_polys), _hbb(gt_polys)
    out_d, out_g = [], []
    cum = np.cumsum(per_det)
    lo = 0
    while lo < len(det_image):
        # largest block of detections whose pairs fit the budget (at least one detection)
        base = cum[lo - 1] if lo else 0
        hi = max(int(np.searchsorted(cum, base + PAIR_BUDGET, side="right")), lo + 1)
        n = per_det[lo:hi]
        total = int(n.sum())
        if total:
            d = np.repeat(np.arange(lo, hi), n)
            within = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
            g = gt_order[starts[det_image[d]] + within]
            a, b = gt_hbb[g], det_hbb[d]
            iw = np.maximum(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1.0, 0.0)
            ih = np.maximum(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1.0, 0.0)
            keep = iw * ih > 0
            out_d.append(d[keep])
            out_g.append(g[keep])
        lo = hi
    if not out_d:
        return empty
    return np.concatenate(out_d), np.concatenate(out_g)


def best_overlaps(det_image, det_polys, gt_image, gt_polys, thresholds, exact: bool = False) -> BestOverlaps:
    """``(ovmax, jmax)`` of every detection, with decisions equal to the devkit's ``polyiou``.

    Args:
        det_image: (D,) image index of each detection; det_polys: (D, 8).
        gt_image: (G,) image index of each ground truth; gt_polys: (G, 8). Ground truths of one image keep
            their file order (it breaks ``argmax`` ties).
        thresholds: the IoU thresholds the caller will compare ``ovmax`` with.
        exact: use the devkit port for every pair (verification; slow).
    """
    det_polys = np.asarray(det_polys, dtype=np.float64).reshape(-1, 8)
    gt_polys = np.asarray(gt_polys, dtype=np.float64).reshape(-1, 8)
    num_dets = len(det_polys)
    ovmax = np.full(num_dets, -np.inf)
    jmax = np.full(num_dets, -1, dtype=np.int64)
    d, g = candidate_pairs(det_image, det_polys, gt_image, gt_polys)
    if d.size == 0:
        return BestOverlaps(ovmax, jmax, 0, 0)
    p, q = gt_polys[g], det_polys[d]  # devkit argument order: iou_poly(gt, det)
    iou, tol, is_exact = pair_iou(p, q, thresholds, exact=exact)

    starts = np.flatnonzero(np.concatenate([[True], d[1:] != d[:-1]]))
    seg = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, d.size)))
    nan = np.isnan(iou)
    # argmax ambiguity: a pair can be the maximum unless its upper bound is below another's lower bound
    v = np.where(nan, -np.inf, iou)
    seg_low = np.maximum.reduceat(v - tol, starts)
    seg_high = np.maximum.reduceat(v + tol, starts)
    contender = (v + tol >= seg_low[seg]) & ~nan
    n_contenders = np.add.reduceat(contender.astype(np.int64), starts)
    relevant = seg_high >= np.min(thresholds) if len(thresholds) else np.zeros(len(starts), bool)
    refine = contender & (n_contenders[seg] > 1) & relevant[seg]
    if refine.any():
        refine_pairs(np.flatnonzero(refine), iou, tol, is_exact, p, q)
        nan = np.isnan(iou)
        v = np.where(nan, -np.inf, iou)

    seg_max = np.maximum.reduceat(v, starts)
    pos = np.arange(d.size)
    first = np.minimum.reduceat(np.where(v == seg_max[seg], pos, d.size), starts)
    dets = d[starts]
    ovmax[dets] = seg_max
    jmax[dets] = g[first]
    has_nan = np.add.reduceat(nan.astype(np.int64), starts) > 0
    if has_nan.any():
        # np.max over a list holding NaN is NaN and np.argmax points at the first NaN
        first_nan = np.minimum.reduceat(np.where(nan, pos, d.size), starts)
        ovmax[dets[has_nan]] = np.nan
        jmax[dets[has_nan]] = g[first_nan[has_nan]]
    return BestOverlaps(ovmax, jmax, int(d.size), int(is_exact.sum()))


def assign(ovmax, jmax, gt_ignore, match_order, thr: float, inclusive: bool):
    """TP and FP flags (D,) float64 of each detection (in the detections' own order) for one threshold.

    Args:
        ovmax, jmax: from :func:`best_overlaps`.
        gt_ignore: (G,) bool, ground truths whose matches are neither TP nor FP (DOTA: difficult).
        match_order: (D,) the order in which detections claim ground truths (highest score first).
        thr: IoU threshold; ``inclusive`` -> ``ovmax >= thr`` (mmrotate), else ``ovmax > thr`` (devkit).
    """
    ovmax = np.asarray(ovmax)
    with np.errstate(invalid="ignore"):
        passing = ovmax >= thr if inclusive else ovmax > thr  # NaN and -inf never pass
    gt_ignore = np.asarray(gt_ignore, dtype=bool)
    ignored = passing & np.where(jmax >= 0, gt_ignore[np.maximum(jmax, 0)] if gt_ignore.size else False, False)
    claim = passing & ~ignored
    tp = np.zeros(len(ovmax))
    ordered = np.asarray(match_order)[claim[match_order]]
    if ordered.size:
        _, first = np.unique(jmax[ordered], return_index=True)
        tp[ordered[first]] = 1.0
    fp = ((~passing) | (claim & (tp == 0))).astype(np.float64)
    return tp, fp
