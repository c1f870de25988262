"""Checkpoint-free proposals on real imagery: the ``regions`` method and OpenCV selective search
(region_proposals.py), through the masks and boxes stages."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest

from mutdet_core.config import pseudo_label_block_problems
from mutdet_core.datasets.dota import read_dota_txt
from mutdet_core.pseudo_labels import generate_masks, masks_to_boxes, open_boxes, open_masks, read_tile_masks
from mutdet_core.pseudo_labels.boxes import tile_boxes
from mutdet_core.pseudo_labels.graph_segmentation import GraphSegmentationParams, propose_segments
from mutdet_core.pseudo_labels.quality import iou_matrix
from mutdet_core.pseudo_labels.region_proposals import (RegionProposalParams, SelectiveSearchParams, propose_regions,
                                                        propose_selective_search)
from mutdet_core.tiling.store import TileStoreWriter
from mutdet_core.tiling.windows import assign_objects


def _window(shared_data, image_id: str, x: int, y: int, size: int):
    """A real ``size`` px window of a DOTA sample image and its objects (IoF >= 0.7), in window pixels."""
    image_path = shared_data / "dota_sample" / "images" / f"{image_id}.png"
    record = read_dota_txt(shared_data / "dota_sample" / "labelTxt" / f"{image_id}.txt", image_path)
    pixels = np.ascontiguousarray(cv2.imread(str(image_path), cv2.IMREAD_COLOR)[y:y + size, x:x + size, ::-1])
    assert pixels.shape == (size, size, 3)
    kept = assign_objects(record.polygons.astype(np.float32), np.array([[x, y, x + size, y + size]]), 0.7)[0]
    return pixels, record.polygons[kept.indices] - np.array([x, y] * 4, np.float64)


def _recall(pixels, gt, proposals, thr=0.5) -> float:
    polygons = tile_boxes(proposals, 0, 1000)["polygon"]
    return float((iou_matrix(gt, polygons).max(axis=1) >= thr).mean())


def test_regions_recall_more_than_the_earlier_classical_proposer_on_a_marina(shared_data):
    """A real 400 px window of the DOTA marina (P0706: ~100 boats, 25 x 8 px): at the same cap, the regions
    method finds many more boats at IoU 0.5 than the Felzenszwalb ladder (which finds almost none)."""
    pixels, gt = _window(shared_data, "P0706", 400, 400, 400)
    assert len(gt) >= 60
    regions = propose_regions(pixels, RegionProposalParams(max_masks=300))
    ladder = propose_segments(pixels, GraphSegmentationParams(num_scales=4, max_masks=300))
    new, old = _recall(pixels, gt, regions), _recall(pixels, gt, ladder)
    assert new >= 0.2 and new > old + 0.1, (new, old)


def test_regions_cap_ranking_and_masks(shared_data):
    """At most max_masks, best objectness first; every mask is its bbox's crop with area = its pixels; the
    boxes stage then keeps the largest masks first, at most max_boxes."""
    pixels, _ = _window(shared_data, "P1888", 100, 100, 300)
    out = propose_regions(pixels, RegionProposalParams(max_masks=40))
    assert len(out["masks"]) == 40 and np.all(np.diff(out["score"]) <= 0)
    for m, (x, y, w, h), area in zip(out["masks"], out["bbox"], out["area"]):
        assert m.shape == (h, w) and m.sum() == area and m[0].any() and m[-1].any() and m[:, 0].any()
        assert 0 <= x and 0 <= y and x + w <= 300 and y + h <= 300
    boxes = tile_boxes(out, 100, max_boxes=15)
    assert len(boxes["rbox"]) == 15
    assert np.all(np.diff(boxes["mask_area"]) <= 0)  # largest first
    assert boxes["mask_area"][-1] >= np.sort(out["area"])[-15]  # ... and they are the 15 largest
    assert (boxes["mask_index"] >= 100).all()


def test_uniform_tile_gives_no_region():
    out = propose_regions(np.full((128, 128, 3), 120, np.uint8), RegionProposalParams())
    assert len(out["masks"]) == 0 and out["bbox"].shape == (0, 4) and out["score"].shape == (0,)


def test_selective_search_boxes_are_valid_zero_angle_boxes(shared_data):
    """Selective-search rectangles stored as filled masks become axis-aligned oriented boxes of the same
    extent (between pixel centres: w - 1 by h - 1), theta 0 or -pi/2 (le90 of a taller-than-wide box)."""
    pixels, _ = _window(shared_data, "P1888", 0, 0, 200)
    out = propose_selective_search(pixels, SelectiveSearchParams(max_masks=50))
    assert 10 <= len(out["masks"]) <= 50 and np.all(np.diff(out["score"]) < 0)
    assert all(m.all() and m.shape == (h, w) for m, (_, _, w, h) in zip(out["masks"], out["bbox"]))
    boxes = tile_boxes(out, 0, 1000)
    assert len(boxes["rbox"]) == len(out["masks"])
    bbox = out["bbox"][boxes["mask_index"]]
    for (cx, cy, w, h, theta), (x, y, bw, bh), polygon in zip(boxes["rbox"], bbox, boxes["polygon"]):
        assert math.isclose(theta, 0.0, abs_tol=1e-6) or math.isclose(theta, -math.pi / 2, abs_tol=1e-6)
        assert sorted([w, h]) == pytest.approx(sorted([bw - 1, bh - 1]))
        assert (cx, cy) == pytest.approx((x + (bw - 1) / 2, y + (bh - 1) / 2))
        xs, ys = polygon[0::2], polygon[1::2]
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == pytest.approx((x, y, x + bw - 1, y + bh - 1), abs=1e-3)


@pytest.fixture(scope="module")
def small_tile_store(shared_data, tmp_path_factory):
    """A tile store of two real 256 px windows (a car park and the marina)."""
    rows, tiles = [], []
    for image_id, x, y in [("P1888", 200, 150), ("P0706", 500, 500)]:
        pixels, gt = _window(shared_data, image_id, x, y, 256)
        rows.append({"tile": f"{image_id}__256__{x}___{y}", "image_id": image_id, "x": x, "y": y, "size": 256})
        tiles.append((pixels, gt.astype(np.float32), np.zeros(len(gt), np.int16), np.zeros(len(gt), np.int8)))
    attrs = {"dataset": "dota_sample", "split": "test", "classes": ["object"], "sizes": [256], "gaps": [0],
             "rates": [1.0], "fingerprint": "test-region-proposals"}
    writer = TileStoreWriter(tmp_path_factory.mktemp("tiles") / "tiles.zarr", pd.DataFrame(rows),
                             [len(t[1]) for t in tiles], attrs)
    for i, tile in enumerate(tiles):
        writer.write_tile(i, *tile)
    return writer.finish()


@pytest.mark.parametrize("method, params", [("regions", {"max_masks": 80}), ("selective_search", {"max_masks": 80})])
def test_checkpoint_free_methods_flow_through_masks_and_boxes_stages(small_tile_store, tmp_path, method, params):
    masks_path = generate_masks(small_tile_store, tmp_path / "masks.zarr", method, params, device="cpu",
                                progress=False)
    masks = open_masks(masks_path)
    assert masks.attrs["params"]["method"] == method and masks.attrs["params"]["max_masks"] == 80
    for i in range(len(masks)):
        tile = read_tile_masks(masks, i)
        assert 10 <= len(tile["masks"]) <= 80
        assert np.array_equal([m.sum() for m in tile["masks"]], tile["area"])
        assert np.isnan(tile["predicted_iou"]).all() and np.isfinite(tile["score"]).all()
    boxes = open_boxes(masks_to_boxes(masks_path, tmp_path / "boxes.zarr", progress=False))
    assert boxes.num_rows > 10 and np.isfinite(boxes.read_all("rbox")).all()
    if method == "selective_search":
        theta = boxes.read_all("rbox")[:, 4]
        assert np.all(np.isclose(theta, 0, atol=1e-6) | np.isclose(theta, -np.pi / 2, atol=1e-6))


def test_config_blocks_of_the_new_methods_are_checked():
    problems = pseudo_label_block_problems({"pseudo_labels": {"masks": {
        "regions": {"max_mask": 10}, "selective_search": {"mode": "slow"}}}})
    assert any("pseudo_labels/masks/regions: unknown keys ['max_mask']" in p for p in problems)
    assert any("pseudo_labels/masks/selective_search" in p and "'slow'" in p for p in problems)
