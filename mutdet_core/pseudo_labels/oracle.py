"""Oracle boxes (a diagnostic, not part of the paper): the split's labelled boxes as the pseudo-boxes.

A dataset entry with ``pseudo_boxes: ground_truth`` skips the masks stage: its boxes store is written here
from the tile store's ground-truth objects, every one of them (difficult and tile-truncated objects too),
and the rest of the chain runs unchanged on it, so classes still come from k-means of the boxes' crop
embeddings, never from the true classes. Pre-training on it separates "the pseudo-boxes are bad" from
"pre-training / transfer loses the effect".

The store has the format, rows and attrs of a ``masks_to_boxes`` store (``boxes.py``): each labelled polygon
-> ``cv2.minAreaRect`` -> le90 ``(cx, cy, w, h, theta)`` (``le90()``, w or h < 2 px dropped and counted),
``polygon`` the rectangle's corners, largest object first, at most ``max_boxes`` per tile. Coordinates are
the tile store's (as labelled, translated to the tile, not clipped). Columns that have no mask behind them:
``mask_area`` is the labelled polygon's area in px (rounded), ``mask_index`` is -1 (no masks store),
``score`` is 1.0. ``attrs["params"]["source"]`` is ``"ground_truth"`` and ``attrs["inputs"]`` holds the tile
store (``"tiles"``) instead of a masks store.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..tiling.store import TileStore
from .artifact import StageWriter, existing_output, input_entry, stage_fingerprint
from .boxes import FORMAT, ROW_ARRAYS, le90

log = logging.getLogger(__name__)


def polygon_boxes(polygons: np.ndarray, max_boxes: int = 1000) -> tuple[dict, int]:
    """Row arrays of ``ROW_ARRAYS`` for one tile's ``(n, 8)`` labelled polygons (largest first, at most
    ``max_boxes``) and the number of polygons dropped for w or h < 2 px."""
    polygons = np.asarray(polygons, np.float32).reshape(-1, 4, 2)
    areas = np.array([abs(cv2.contourArea(p)) for p in polygons], np.float64)
    rboxes, corners, kept, thin = [], [], [], 0
    for j in np.argsort(-areas, kind="stable"):  # stable: equal areas keep the label order
        if len(kept) == max_boxes:
            break
        rect = cv2.minAreaRect(polygons[j])
        box = le90(rect)
        if box is None:
            thin += 1
            continue
        rboxes.append(box)
        corners.append(cv2.boxPoints(rect).reshape(8))
        kept.append(j)
    kept = np.asarray(kept, dtype=np.int64)
    rows = {
        "rbox": np.asarray(rboxes, np.float32).reshape(-1, 5),
        "polygon": np.asarray(corners, np.float32).reshape(-1, 8),
        "mask_area": np.round(areas[kept]).astype(np.int64), "mask_index": np.full(len(kept), -1, np.int64),
        "score": np.ones(len(kept), np.float32),
    }
    return rows, thin


def ground_truth_boxes(tile_store, out_path, max_boxes: int = 1000, overwrite: bool = False,
                       progress: bool | None = None) -> Path:
    """Oracle boxes stage: the labelled boxes of ``tile_store`` as a ``mutdet-boxes`` store at ``out_path``.

    Args:
        tile_store: path of a finished tile store (or an open ``TileStore``) of a labelled split.
        out_path: the ``.zarr`` store to write.
        max_boxes: boxes kept per tile (largest objects first), as ``masks_to_boxes``.
    Returns:
        ``out_path`` (left as it is when already built with the same inputs and parameters).
    Raises:
        ValueError: ``max_boxes`` < 1, or a tile store without any labelled object (an unlabelled split).
    """
    tiles = tile_store if isinstance(tile_store, TileStore) else TileStore.open(tile_store)
    if max_boxes < 1:
        raise ValueError(f"oracle boxes: max_boxes must be >= 1, got {max_boxes}")
    num_objects = int(tiles.summary()["objects"])
    if num_objects == 0:
        raise ValueError(f"oracle boxes: {tiles.path} has no labelled objects (an unlabelled split?); "
                         f"pseudo_boxes 'ground_truth' needs a labelled split")
    params = {"source": "ground_truth", "max_boxes": int(max_boxes), "min_size": 2, "angle_version": "le90"}
    inputs = {"tiles": input_entry(tiles)}
    fingerprint = stage_fingerprint(FORMAT, params, {k: v["fingerprint"] for k, v in inputs.items()})
    if existing_output(out_path, fingerprint, FORMAT, overwrite) is not None:
        return Path(out_path)
    attrs = {"params": params, "inputs": inputs, "fingerprint": fingerprint,
             "tile_fingerprint": tiles.attrs["fingerprint"], "tile_store": inputs["tiles"]["path"]}
    thin = capped = 0
    with StageWriter(out_path, FORMAT, tiles.index, ROW_ARRAYS, attrs) as writer:
        for i in tqdm(range(len(tiles)), desc="oracle boxes", unit="tile",
                      disable=None if progress is None else not progress):
            polygons = tiles.read_objects(i)["polygons"]
            rows, dropped = polygon_boxes(polygons, max_boxes)
            thin += dropped
            capped += len(polygons) - dropped - len(rows["rbox"])
            writer.append_tile(i, rows)
        path = writer.finish(objects_not_boxed=thin + capped, objects_too_thin=thin, objects_over_max_boxes=capped)
    log.info("oracle boxes: %d labelled objects -> %d boxes (%d dropped: %d with w or h < 2 px, %d over %d per "
             "tile)", num_objects, num_objects - thin - capped, thin + capped, thin, capped, max_boxes)
    return path
