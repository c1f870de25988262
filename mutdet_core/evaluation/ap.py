"""Average precision from ranked TP/FP flags: VOC07 11-point and VOC "area" AP, in two roundings.

Both the DOTA devkit (``voc_ap``) and mmdet/mmrotate (``average_precision``) compute the same quantities,
with differences that matter only in the last bits or in corner cases; each convention keeps its own:

- recall/precision: devkit ``tp / npos`` and ``tp / max(tp + fp, float64 eps)``; mmrotate
  ``tp / max(num_gts, float32 eps)`` and ``tp / max(tp + fp, float32 eps)``.
- 11-point: the thresholds are ``np.arange(0, 1.1, 0.1)`` in both, so ``0.30000000000000004``: a recall of
  exactly 0.3 does *not* reach the 0.3 point. The devkit adds ``p / 11`` eleven times, mmdet sums the
  eleven precisions and divides once.
- area: monotone precision envelope, sum of recall steps times precision (identical in both).
- no ground truth: the devkit divides by zero (recall NaN, so 11-point AP 0 and area AP NaN); we return 0
  for both modes. mmrotate gets recall 0 and AP 0.
"""
from __future__ import annotations

import numpy as np

ELEVEN_POINTS = np.arange(0.0, 1.1, 0.1)  # exactly the devkit's and mmdet's float values


def precision_recall(tp, fp, num_gt: int, convention: str):
    """Cumulative recall and precision (D,) from TP/FP flags in ranked order."""
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    if convention == "dota":
        with np.errstate(divide="ignore", invalid="ignore"):
            rec = tp / float(num_gt)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    elif convention == "mmrotate":
        eps = np.finfo(np.float32).eps
        rec = tp / np.maximum(num_gt, eps)
        prec = tp / np.maximum(tp + fp, eps)
    else:
        raise ValueError(f"unknown convention {convention!r}")
    return rec, prec


def eleven_point_ap(rec, prec, convention: str) -> float:
    """VOC07 11-point AP: mean over t in 0, 0.1, ..., 1 of the best precision at recall >= t (0 if none)."""
    rec, prec = np.asarray(rec), np.asarray(prec)
    points = []
    for t in ELEVEN_POINTS:
        reached = rec >= t  # NaN recall (no ground truth) reaches nothing
        points.append(float(np.max(prec[reached])) if reached.any() else 0.0)
    ap = 0.0
    if convention == "dota":
        for p in points:
            ap = ap + p / 11.0
        return float(ap)
    for p in points:  # mmdet: ``ap += prec`` per point, then ``ap /= 11``
        ap = ap + p
    return float(ap / 11)


def area_ap(rec, prec) -> float:
    """VOC2010+ AP: area under the monotone precision envelope (0 when recall is undefined)."""
    rec, prec = np.asarray(rec, dtype=np.float64), np.asarray(prec, dtype=np.float64)
    if rec.size and np.isnan(rec).any():
        return 0.0
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the devkit's backward max loop, vectorised (exact)
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def average_precision(tp, fp, num_gt: int, convention: str, use_07_metric: bool = True) -> tuple[float, float]:
    """AP and final recall of one class at one threshold, from TP/FP flags in ranked order.

    Returns ``(ap, recall)``; ``recall`` is 0 without detections or ground truth.
    """
    if len(tp) == 0 or num_gt == 0:
        return 0.0, 0.0
    rec, prec = precision_recall(tp, fp, num_gt, convention)
    ap = eleven_point_ap(rec, prec, convention) if use_07_metric else area_ap(rec, prec)
    return ap, float(rec[-1])
