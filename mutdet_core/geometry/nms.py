"""Greedy non-maximum suppression for oriented boxes, DOTA devkit semantics.

Boxes are visited in descending score order (ties: lower index first); a box is kept unless its IoU with
an already kept box is strictly greater than ``iou_threshold`` (the devkit's ``py_cpu_nms_poly`` keeps
``iou <= thresh``; mmcv's CPU ``nms_rotated`` uses >=, its CUDA kernel >).

Only pairs whose axis-aligned boxes overlap get an exact IoU (see ``polygon_iou``), and only the pairs
above the threshold are kept, as a sparse graph; the greedy pass then walks that graph. Class-wise NMS
simply drops cross-class pairs before the exact IoU: with no edges between classes, one greedy pass in
global score order equals running NMS per class, without mmrotate's centre-offset trick (which needs the
offset to exceed every box's extent and breaks for negative coordinates).
"""
from __future__ import annotations

import numpy as np
import torch

from ._interop import check_finite, is_torch, to_tensor
from .polygon_iou import PreparedBoxes, candidate_pairs, pair_overlaps, prepare_boxes


def _greedy(order_len: int, ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
    """Greedy pass over ranks 0..order_len-1; edges (ii[k] -> jj[k]) with ii < jj mean "ii suppresses jj"."""
    suppressed = np.zeros(order_len, dtype=bool)
    if ii.size == 0:
        return np.arange(order_len)
    by_src = np.argsort(ii, kind="stable")
    ii, jj = ii[by_src], jj[by_src]
    starts = np.searchsorted(ii, np.arange(order_len + 1))
    has_edges = starts[1:] > starts[:-1]
    keep = []
    for r in range(order_len):  # one step per box, not per pair; most boxes have no edges at all
        if suppressed[r]:
            continue
        keep.append(r)
        if has_edges[r]:
            suppressed[jj[starts[r]:starts[r + 1]]] = True
    return np.asarray(keep, dtype=np.int64)


def _nms(boxes, scores, iou_threshold: float, class_ids, fn: str, nonconvex: str):
    if not 0 <= float(iou_threshold) <= 1 or np.isnan(float(iou_threshold)):
        raise ValueError(f"{fn}: iou_threshold must be in [0, 1], got {iou_threshold}")
    device = next((x.device for x in (boxes, scores, class_ids) if isinstance(x, torch.Tensor)), None)
    prepared = prepare_boxes(boxes, fn, "boxes", nonconvex=nonconvex, device=device)
    n = len(prepared)
    s = to_tensor(scores, dtype=torch.float64, device=prepared.quads.device, name="scores").reshape(-1)
    if s.numel() != n:
        raise ValueError(f"{fn}: {n} boxes but {s.numel()} scores")
    check_finite(s, "scores", fn)
    groups = None
    if class_ids is not None:
        groups = to_tensor(class_ids, dtype=torch.long, device=prepared.quads.device, name="class_ids").reshape(-1)
        if groups.numel() != n:
            raise ValueError(f"{fn}: {n} boxes but {groups.numel()} class ids")

    # Ranks in descending score order; stable so equal scores keep their input order.
    order = torch.sort(s, descending=True, stable=True).indices
    ranked = PreparedBoxes(prepared.quads[order], prepared.areas[order], prepared.hbb[order], prepared.ok[order])
    g = groups[order] if groups is not None else None
    ii, jj = candidate_pairs(ranked, ranked, upper=True, groups_a=g, groups_b=g)
    iou = pair_overlaps(ranked, ranked, ii, jj, "iou")
    over = iou > iou_threshold
    keep_ranks = _greedy(n, ii[over].cpu().numpy(), jj[over].cpu().numpy())
    keep = order.cpu().numpy()[keep_ranks]
    if is_torch(boxes, scores, class_ids):
        return torch.as_tensor(keep, dtype=torch.long, device=device)
    return keep


def rotated_nms(boxes, scores, iou_threshold: float, nonconvex: str = "raise"):
    """Greedy NMS over all boxes regardless of class.

    Args:
        boxes: (N, 5) obbs (cx, cy, w, h, theta) or (N, 8) convex quadrilaterals; numpy or torch.
        scores: (N,).
        iou_threshold: a box is suppressed when IoU with a kept, higher-scoring box is > this.
        nonconvex: for (N, 8) input, see :func:`~mutdet_core.geometry.polygon_iou.poly_iou`.

    Returns:
        (K,) int64 indices into ``boxes`` of the kept boxes, by descending score (numpy, or a torch long
        tensor on the inputs' device when any input is a tensor). Degenerate (zero-area) boxes overlap
        nothing, so they are always kept: drop them beforehand (``valid_obb_mask``) if unwanted.
    """
    return _nms(boxes, scores, iou_threshold, None, "rotated_nms", nonconvex)


def batched_rotated_nms(boxes, scores, class_ids, iou_threshold: float, nonconvex: str = "raise"):
    """Class-wise greedy NMS: boxes of different ``class_ids`` (N,) never suppress each other.

    Same arguments and return value as :func:`rotated_nms`; kept indices of all classes together, by
    descending score.
    """
    return _nms(boxes, scores, iou_threshold, class_ids, "batched_rotated_nms", nonconvex)
