"""Checkpoint-free proposals that find the small, dense objects of aerial tiles: the ``regions`` method,
and OpenCV's selective search (the ``selective_search`` method, DETReg's proposal source) beside it.

``regions`` (``propose_regions``), per tile:

1. **Felzenszwalb-Huttenlocher segmentation**, OpenCV's compiled implementation
   (``cv2.ximgproc.segmentation.createGraphSegmentation``, ~0.1 s per 800 px tile) at ``k = scale * 2**i``.
   On the DOTA sample one scale, k 200 at sigma 0.8, ranks best: finer scales add many fragments and few
   objects that k 200 misses (bench/bench_proposals.py, BENCHMARKS.md).
2. **Merging of over-segmented neighbours**: every segment and every union of two adjacent segments
   (4-connected) is a candidate. An object seen from above is often two segments: a boat's white deck and
   dark cockpit, a plane's fuselage and wings, a vehicle and its shadow.
3. **Objectness** = ``min(1, contrast / contrast_scale) * log(area) * (pair_weight if a union)``, where
   contrast is the Lab distance between the candidate's mean colour and the mean colour of its surround
   (its bounding box grown by half its size on each side, minus the candidate; integral images, so every
   candidate costs O(1)). Objects stand out of their surround; roof and road fragments continue it.
4. **Box NMS** (axis-aligned, ``box_nms_thresh``) by objectness and at most ``max_masks`` (1000 as the
   release's ``max_gt_num``). Only the kept candidates get a mask, **dilated by ``dilate`` px**: segments
   stop one pixel inside the object edge of the blurred image, and the boxes stage measures boxes between
   pixel centres, so an undilated 8 px wide boat would get a 7 px wide box (IoU 0.5 lost for small objects).

In the mask store ``score`` is the objectness; ``stability_score``, ``predicted_iou`` and ``point`` are NaN.

``selective_search`` (``selective_search_boxes``): OpenCV's ``createSelectiveSearchSegmentation`` (fast or
quality strategy) gives axis-aligned boxes, in its own ranking. Boxes-only proposals flow through the
mask store as the **filled box** (mask = every pixel of the rectangle), so the boxes stage turns each into
a 0-angle oriented box (``w`` by ``h`` pixels -> ``w - 1`` by ``h - 1`` between pixel centres, as every mask).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torchvision

from .params import RegionProposalParams, SelectiveSearchParams  # noqa: F401  (torch-free home, re-exported)

_EMPTY = {"bbox": np.zeros((0, 4), np.int32), "masks": [], "area": np.zeros(0, np.int64),
          "score": np.zeros(0, np.float32)}


def _segments(labels: np.ndarray) -> dict:
    """Per segment of a label image ``(H, W)`` int: ``count`` (S,), inclusive extent ``x0 y0 x1 y1`` (S, 4)
    and the adjacent pairs ``(P, 2)`` (4-connected, each once, smaller label first)."""
    height, width = labels.shape
    flat = labels.ravel().astype(np.int64)
    n = int(flat.max()) + 1
    count = np.bincount(flat, minlength=n)
    order = np.argsort(flat, kind="stable")
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    ys, xs = np.divmod(order, width)
    present = count > 0
    extent = np.zeros((n, 4), np.int64)
    s = start[present]
    extent[present] = np.stack([np.minimum.reduceat(xs, s), np.minimum.reduceat(ys, s),
                                np.maximum.reduceat(xs, s), np.maximum.reduceat(ys, s)], 1)
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()]).astype(np.int64)
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()]).astype(np.int64)
    differ = a != b
    key = np.unique(np.minimum(a[differ], b[differ]) * n + np.maximum(a[differ], b[differ]))
    return {"count": count, "extent": extent, "pairs": np.stack([key // n, key % n], 1), "flat": flat}


def _box_sums(integral: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Sums of an image over inclusive boxes ``x0 y0 x1 y1`` (N, 4), from ``cv2.integral`` (H+1, W+1, C)."""
    x0, y0, x1, y1 = box.T
    return (integral[y1 + 1, x1 + 1] - integral[y0, x1 + 1] - integral[y1 + 1, x0] + integral[y0, x0])


def region_candidates(image: np.ndarray, params: RegionProposalParams) -> dict:
    """Every candidate region of one tile with its objectness (no masks yet).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
    Returns:
        dict with ``labels`` (list of the scales' ``(H, W)`` int32 label images), ``level`` (M,) int64 the
        scale of each candidate, ``parts`` (M, 2) int64 its segment labels (second -1 for a single segment),
        ``extent`` (M, 4) int64 inclusive ``x0 y0 x1 y1``, ``area`` (M,) int64, ``contrast`` and ``score``
        (M,) float32.
    """
    height, width = image.shape[:2]
    bgr = np.ascontiguousarray(image[..., ::-1])
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float64)
    integral = cv2.integral(lab)  # (H+1, W+1, 3)
    max_area = params.max_area_fraction * height * width
    out = {key: [] for key in ("level", "parts", "extent", "area", "colour")}
    label_images = []
    for level in range(params.num_scales):
        segmenter = cv2.ximgproc.segmentation.createGraphSegmentation(
            sigma=params.sigma, k=float(params.scale * 2 ** level), min_size=params.min_size)
        labels = segmenter.processImage(bgr)
        label_images.append(labels)
        seg = _segments(labels)
        n = len(seg["count"])
        colour = np.stack([np.bincount(seg["flat"], weights=lab[..., c].ravel(), minlength=n) for c in range(3)], 1)
        singles = np.nonzero(seg["count"] > 0)[0]
        groups = [(np.stack([singles, np.full_like(singles, -1)], 1), seg["count"][singles], seg["extent"][singles],
                   colour[singles])]
        if params.merge_neighbours and len(seg["pairs"]):
            p, q = seg["pairs"].T
            ext = np.concatenate([np.minimum(seg["extent"][p, :2], seg["extent"][q, :2]),
                                  np.maximum(seg["extent"][p, 2:], seg["extent"][q, 2:])], 1)
            groups.append((seg["pairs"], seg["count"][p] + seg["count"][q], ext, colour[p] + colour[q]))
        for parts, area, extent, col in groups:
            keep = (area >= params.min_area) & (area <= max_area)
            out["level"].append(np.full(int(keep.sum()), level, np.int64))
            for key, value in (("parts", parts), ("area", area), ("extent", extent), ("colour", col)):
                out[key].append(value[keep])
    cand = {key: np.concatenate(value) if value else np.zeros(0) for key, value in out.items()}
    cand["labels"] = label_images
    if not len(cand["area"]):
        cand.update(contrast=np.zeros(0, np.float32), score=np.zeros(0, np.float32))
        return cand
    extent, area = cand["extent"], cand["area"].astype(np.float64)
    w, h = extent[:, 2] - extent[:, 0] + 1, extent[:, 3] - extent[:, 1] + 1
    surround = np.stack([np.maximum(extent[:, 0] - w // 2, 0), np.maximum(extent[:, 1] - h // 2, 0),
                         np.minimum(extent[:, 2] + w // 2, width - 1), np.minimum(extent[:, 3] + h // 2, height - 1)], 1)
    surround_n = ((surround[:, 2] - surround[:, 0] + 1) * (surround[:, 3] - surround[:, 1] + 1)) - area
    surround_colour = (_box_sums(integral, surround) - cand["colour"]) / np.maximum(surround_n, 1)[:, None]
    contrast = np.linalg.norm(cand["colour"] / area[:, None] - surround_colour, axis=1)
    contrast[surround_n <= 0] = 0.0  # a candidate that fills its surround (the tile): nothing to stand out of
    weight = np.where(cand["parts"][:, 1] >= 0, params.pair_weight, 1.0)
    cand["contrast"] = contrast.astype(np.float32)
    cand["score"] = (np.minimum(1.0, contrast / params.contrast_scale) * np.log(area) * weight).astype(np.float32)
    return cand


def _mask(labels: np.ndarray, parts, extent, dilate: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The candidate's bool mask, dilated by ``dilate`` px (3x3 square, clipped to the tile), cropped to its
    pixels, and its ``x, y, w, h``."""
    height, width = labels.shape
    x0, y0 = max(int(extent[0]) - dilate, 0), max(int(extent[1]) - dilate, 0)
    x1, y1 = min(int(extent[2]) + dilate, width - 1), min(int(extent[3]) + dilate, height - 1)
    window = labels[y0:y1 + 1, x0:x1 + 1]
    crop = window == parts[0]
    if parts[1] >= 0:
        crop |= window == parts[1]
    if dilate:
        crop = cv2.dilate(crop.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=dilate).astype(bool)
    rows, cols = np.nonzero(crop.any(1))[0], np.nonzero(crop.any(0))[0]
    crop = crop[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return crop, (x0 + int(cols[0]), y0 + int(rows[0]), crop.shape[1], crop.shape[0])


def propose_regions(image: np.ndarray, params: RegionProposalParams) -> dict:
    """The ``regions`` proposals of one tile, best first.

    Returns:
        dict with ``bbox`` (M, 4) int32 ``x, y, w, h``, ``masks`` list of M bool crops ``(h, w)``, ``area``
        (M,) int64 mask pixels and ``score`` (M,) float32 objectness, ``M <= max_masks``.
    """
    cand = region_candidates(image, params)
    if not len(cand["area"]):
        return {key: (list(v) if isinstance(v, list) else v.copy()) for key, v in _EMPTY.items()}
    xyxy = torch.as_tensor(cand["extent"], dtype=torch.float32)
    xyxy[:, 2:] += 1  # inclusive pixel extent -> box edges
    keep = torchvision.ops.nms(xyxy, torch.as_tensor(cand["score"]), params.box_nms_thresh).numpy()
    keep = keep[:params.max_masks]
    masks, bbox = [], []
    for j in keep.tolist():
        crop, box = _mask(cand["labels"][cand["level"][j]], cand["parts"][j], cand["extent"][j], params.dilate)
        masks.append(crop)
        bbox.append(box)
    return {"bbox": np.asarray(bbox, np.int32).reshape(-1, 4), "masks": masks,
            "area": np.array([int(m.sum()) for m in masks], np.int64), "score": cand["score"][keep]}


def selective_search_boxes(image: np.ndarray, params: SelectiveSearchParams) -> np.ndarray:
    """OpenCV selective search on one tile: ``(N, 4)`` int32 ``x, y, w, h`` in its ranking order, boxes
    smaller than ``min_side`` on a side dropped, at most ``max_masks``."""
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image[..., ::-1]))
    if params.mode == "fast":
        search.switchToSelectiveSearchFast(params.base_k, params.inc_k, params.sigma)
    else:
        search.switchToSelectiveSearchQuality(params.base_k, params.inc_k, params.sigma)
    rects = np.asarray(search.process(), np.int32).reshape(-1, 4)
    rects = rects[(rects[:, 2] >= params.min_side) & (rects[:, 3] >= params.min_side)]
    return rects[:params.max_masks]


def propose_selective_search(image: np.ndarray, params: SelectiveSearchParams) -> dict:
    """Selective-search boxes as mask-store rows: each mask is its filled box (boxes-only proposals), the
    score falls from 1 with the rank. Same keys as ``propose_regions``."""
    rects = selective_search_boxes(image, params)
    m = len(rects)
    return {"bbox": rects, "masks": [np.ones((int(h), int(w)), bool) for _, _, w, h in rects],
            "area": (rects[:, 2].astype(np.int64) * rects[:, 3]),
            "score": (1.0 - np.arange(m) / max(m, 1)).astype(np.float32)}
