"""Boxes stage (SPEC 2.3): each mask -> one oriented box, le90, largest masks first.

As MutDet's ``step1_3_mask_to_poly`` + mmrotate's ``poly2obb_np_le90``: per mask, the external contour
with the most points (``cv2.findContours(RETR_EXTERNAL, CHAIN_APPROX_NONE)``) -> ``cv2.minAreaRect``;
the rectangle becomes ``(cx, cy, w, h, theta)`` with ``w >= h`` and ``theta`` in ``[-pi/2, pi/2)``;
boxes with ``w < 2`` or ``h < 2`` px are dropped; masks are visited by area, largest first, and at most
``max_boxes`` (1000, the released ``max_gt_num``) are kept. Coordinates are those of the contour points,
i.e. pixel indices (pixel centres on integers), as in the released code. Unlike the released script, the
polygons are not clipped at 0: the stored polygon is exactly the rectangle's corners.

Store ``mutdet-boxes`` (layout in ``artifact.py``), one row per box::

    rbox        (N, 5) float32   cx, cy, w, h, theta (radians, le90) in tile pixels
    polygon     (N, 8) float32   the rectangle's corners (cv2.boxPoints order)
    mask_area   (N,) int64       pixels of the mask the box came from
    mask_index  (N,) int64       row of that mask in the masks store
    score       (N,) float32     the mask's score (SAM predicted IoU / classical objectness)
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .artifact import StageWriter, existing_output, input_entry, open_stage, stage_fingerprint
from .masks import open_masks, read_tile_masks

log = logging.getLogger(__name__)

FORMAT = "mutdet-boxes"
ROW_ARRAYS = {"rbox": ((5,), "float32"), "polygon": ((8,), "float32"), "mask_area": ((), "int64"),
              "mask_index": ((), "int64"), "score": ((), "float32")}


def le90(rect) -> tuple[float, float, float, float, float] | None:
    """``cv2.minAreaRect`` output -> ``(cx, cy, w, h, theta)`` le90, or None when ``w`` or ``h`` < 2
    (mmrotate ``poly2obb_np_le90``)."""
    (cx, cy), (w, h), angle = rect
    if w < 2 or h < 2:
        return None
    theta = angle / 180 * math.pi
    if w < h:
        w, h = h, w
        theta += math.pi / 2
    while not -math.pi / 2 <= theta < math.pi / 2:
        theta += -math.pi if theta >= math.pi / 2 else math.pi
    return float(cx), float(cy), float(w), float(h), float(theta)


def rbox_to_polygon(rbox: np.ndarray) -> np.ndarray:
    """``(N, 5)`` le90 boxes -> ``(N, 8)`` corners; the w side runs along ``(cos theta, sin theta)``."""
    rbox = np.asarray(rbox, dtype=np.float64).reshape(-1, 5)
    cx, cy, w, h, t = rbox.T
    c, s = np.cos(t), np.sin(t)
    dx = np.stack([w / 2 * c, w / 2 * s], axis=1)
    dy = np.stack([-h / 2 * s, h / 2 * c], axis=1)
    center = np.stack([cx, cy], axis=1)
    corners = [center - dx - dy, center + dx - dy, center + dx + dy, center - dx + dy]
    return np.stack(corners, axis=1).reshape(-1, 8)


def mask_to_rbox(crop: np.ndarray, bbox) -> tuple[tuple | None, np.ndarray | None]:
    """One mask (bool crop and its ``x, y, w, h``) -> ``(rbox le90 or None, polygon (8,) or None)``."""
    contours, _ = cv2.findContours(np.ascontiguousarray(crop, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None, None
    (cx, cy), size, angle = cv2.minAreaRect(max(contours, key=len))
    rect = ((cx + float(bbox[0]), cy + float(bbox[1])), size, angle)
    box = le90(rect)
    if box is None:
        return None, None
    return box, cv2.boxPoints(rect).reshape(8)


def tile_boxes(masks: dict, first_row: int, max_boxes: int = 1000) -> dict:
    """Boxes of one tile from ``read_tile_masks`` output; ``first_row`` is the tile's first mask row.

    Returns the row arrays of ``ROW_ARRAYS`` (largest mask first, at most ``max_boxes``)."""
    order = np.argsort(-masks["area"], kind="stable")  # stable: equal areas keep the generator's order
    rboxes, polygons, kept = [], [], []
    for j in order:
        if len(kept) == max_boxes:
            break
        box, polygon = mask_to_rbox(masks["masks"][j], masks["bbox"][j])
        if box is not None:
            rboxes.append(box)
            polygons.append(polygon)
            kept.append(j)
    kept = np.asarray(kept, dtype=np.int64)
    return {
        "rbox": np.asarray(rboxes, np.float32).reshape(-1, 5),
        "polygon": np.asarray(polygons, np.float32).reshape(-1, 8),
        "mask_area": masks["area"][kept], "mask_index": first_row + kept, "score": masks["score"][kept],
    }


def masks_to_boxes(masks_store, out_path, max_boxes: int = 1000, overwrite: bool = False,
                   progress: bool | None = None) -> Path:
    """Boxes stage entry point: oriented boxes of every mask of ``masks_store`` into ``out_path``.

    Args:
        masks_store: path of a finished masks store.
        out_path: the ``.zarr`` store to write.
        max_boxes: boxes kept per tile (largest masks first); the released code used 1000.
    Returns:
        ``out_path`` (left as it is when already built with the same inputs and parameters).
    """
    masks = open_masks(masks_store)
    if max_boxes < 1:
        raise ValueError(f"boxes: max_boxes must be >= 1, got {max_boxes}")
    params = {"max_boxes": int(max_boxes), "min_size": 2, "angle_version": "le90"}
    inputs = {"masks": input_entry(masks)}
    fingerprint = stage_fingerprint(FORMAT, params, {k: v["fingerprint"] for k, v in inputs.items()})
    if existing_output(out_path, fingerprint, FORMAT, overwrite) is not None:
        return Path(out_path)
    attrs = {"params": params, "inputs": inputs, "fingerprint": fingerprint,
             "tile_fingerprint": masks.attrs["tile_fingerprint"], "tile_store": masks.attrs["inputs"]["tiles"]["path"]}
    dropped = 0
    with StageWriter(out_path, FORMAT, masks.index, ROW_ARRAYS, attrs) as writer:
        for i in tqdm(range(len(masks)), desc="boxes", unit="tile", disable=None if progress is None else not progress):
            rows = tile_boxes(read_tile_masks(masks, i), int(masks.offsets[i]), max_boxes)
            dropped += int(masks.offsets[i + 1] - masks.offsets[i]) - len(rows["rbox"])
            writer.append_tile(i, rows)
        path = writer.finish(masks_not_boxed=dropped)
    log.info("boxes: %d masks -> %d boxes (%d dropped: w or h < 2 px or over %d per tile)",
             masks.num_rows, masks.num_rows - dropped, dropped, max_boxes)
    return path


def open_boxes(path):
    """Open a finished boxes store (``StageError`` otherwise)."""
    return open_stage(path, FORMAT)
