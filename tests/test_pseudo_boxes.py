"""Boxes stage: mask -> le90 oriented box, ordering, limits, row alignment, killed jobs, fingerprints."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from mutdet_core.geometry import obb2poly, poly_iou
from mutdet_core.pseudo_labels import StageError, extract_embeddings, masks_to_boxes, open_boxes, open_masks
from mutdet_core.pseudo_labels import boxes as boxes_module
from mutdet_core.pseudo_labels.boxes import le90, mask_to_rbox, rbox_to_polygon, tile_boxes
from mutdet_core.pseudo_labels.masks import read_tile_masks
from pseudo_label_fixtures import FAST_EMBEDDING, chain, tile_store_path, write_dota_tile_store  # noqa: F401


def _rotated_rectangle_mask(size, center, w, h, angle_deg):
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(cv2.boxPoints((center, (w, h), angle_deg))).astype(np.int32)], 1)
    return mask.astype(bool)


@pytest.mark.parametrize("angle", [-80.0, -45.0, -10.0, 0.0, 30.0, 60.0, 89.0])
def test_rotated_rectangle_mask_gives_its_box_le90(angle):
    mask = _rotated_rectangle_mask(200, (100.0, 90.0), 80, 30, angle)
    (cx, cy, w, h, theta), polygon = mask_to_rbox(mask, (0, 0, 200, 200))
    assert w >= h and -math.pi / 2 <= theta < math.pi / 2
    assert abs(cx - 100) < 1.5 and abs(cy - 90) < 1.5 and abs(w - 80) < 3 and abs(h - 30) < 3
    # the long side lies along the drawn rectangle's w side (angle modulo pi)
    diff = (theta - math.radians(angle) + math.pi / 2) % math.pi - math.pi / 2
    assert abs(diff) < math.radians(3)
    assert poly_iou(rbox_to_polygon(np.array([[cx, cy, w, h, theta]])), polygon[None])[0, 0] > 0.999
    assert poly_iou(obb2poly(np.array([[cx, cy, w, h, theta]])), polygon[None].astype(np.float64))[0, 0] > 0.999


def test_le90_matches_mmrotate_rules():
    assert le90(((5.0, 5.0), (1.9, 10.0), 30.0)) is None  # h < 2 px dropped
    cx, cy, w, h, t = le90(((5.0, 5.0), (3.0, 10.0), 30.0))
    assert (w, h) == (10.0, 3.0) and math.isclose(t, math.radians(30) + math.pi / 2 - math.pi)
    assert le90(((0.0, 0.0), (10.0, 4.0), 90.0))[4] == pytest.approx(-math.pi / 2)  # pi/2 wraps to -pi/2


def test_tile_boxes_orders_by_area_drops_thin_and_caps():
    masks = [np.ones((3, 30), bool), np.ones((1, 50), bool), np.ones((10, 10), bool), np.ones((20, 20), bool)]
    bbox = np.array([[0, 0, 30, 3], [0, 10, 50, 1], [40, 40, 10, 10], [100, 100, 20, 20]], np.int32)
    data = {"masks": masks, "bbox": bbox, "area": np.array([90, 50, 100, 400]),
            "score": np.array([0.1, 0.2, 0.3, 0.4], np.float32)}
    rows = tile_boxes(data, first_row=1000)
    # largest first; the 1-px line has h = 0 after minAreaRect -> dropped
    assert rows["mask_index"].tolist() == [1003, 1002, 1000]
    assert rows["mask_area"].tolist() == [400, 100, 90]
    assert np.allclose(rows["rbox"][0, :4], [109.5, 109.5, 19, 19])  # contour through pixel centres
    capped = tile_boxes(data, first_row=0, max_boxes=2)
    assert capped["mask_index"].tolist() == [3, 2]


def test_boxes_store_is_row_aligned_with_its_masks(chain):
    masks, boxes = open_masks(chain["masks"]), open_boxes(chain["boxes"])
    assert boxes.index["tile"].tolist() == masks.index["tile"].tolist()
    area_all, rbox_all = masks.read_all("area"), boxes.read_all("rbox")
    for i in range(len(boxes)):
        rows = boxes.rows(i)
        index = boxes.read("mask_index", i)
        assert ((index >= masks.offsets[i]) & (index < masks.offsets[i + 1])).all()  # masks of the same tile
        assert np.array_equal(area_all[index], boxes.read("mask_area", i))
        assert np.all(np.diff(boxes.read("mask_area", i)) <= 0)
        r = rbox_all[rows]
        assert (r[:, 2] >= r[:, 3]).all() and (r[:, 3] >= 2).all()
        assert ((r[:, 4] >= -math.pi / 2) & (r[:, 4] < math.pi / 2)).all()
    assert boxes.offsets[-1] - boxes.offsets[-2] == 0  # the blank tile
    # each box covers its mask: nearly all mask pixels inside the rectangle
    m = read_tile_masks(masks, 0)
    j = int(boxes.read("mask_index", 0)[0] - masks.offsets[0])
    crop, (x, y, w, h) = m["masks"][j], m["bbox"][j]
    inside = np.zeros((800, 800), np.uint8)
    cv2.fillPoly(inside, [np.round(boxes.read("polygon", 0)[0].reshape(4, 2)).astype(np.int32)], 1)
    assert inside[y:y + h, x:x + w][crop].mean() > 0.97


def test_killed_job_leaves_no_finished_store(chain, tmp_path, monkeypatch):
    out = tmp_path / "boxes.zarr"
    real, calls = boxes_module.tile_boxes, []

    def dies_on_second_tile(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(boxes_module, "tile_boxes", dies_on_second_tile)
    with pytest.raises(KeyboardInterrupt):
        masks_to_boxes(chain["masks"], out, progress=False)
    assert not out.exists() and not (tmp_path / "boxes.zarr.tmp").exists()
    with pytest.raises(StageError, match="no mutdet-boxes store"):
        open_boxes(out)
    monkeypatch.setattr(boxes_module, "tile_boxes", real)
    rerun = open_boxes(masks_to_boxes(chain["masks"], out, progress=False))
    assert rerun.num_rows == open_boxes(chain["boxes"]).num_rows


def test_half_written_store_is_never_taken_for_finished(chain, tmp_path):
    out = tmp_path / "boxes.zarr"
    (tmp_path / "boxes.zarr.tmp").mkdir()  # what a SIGKILL leaves behind
    with pytest.raises(StageError, match="unfinished write exists beside it"):
        open_boxes(out)
    masks_to_boxes(chain["masks"], out, progress=False)  # a rerun replaces the leftover
    assert not (tmp_path / "boxes.zarr.tmp").exists() and open_boxes(out).attrs["complete"]


def test_boxes_from_another_tile_store_are_refused(chain, shared_data, tmp_path):
    other = write_dota_tile_store(shared_data, tmp_path / "other.zarr", windows=[("P1888", 0, 0)], blank=False)
    with pytest.raises(StageError, match="rerun the masks and boxes stages"):
        extract_embeddings(other, chain["boxes"], tmp_path / "e.zarr", FAST_EMBEDDING, device="cpu")
    assert not (tmp_path / "e.zarr").exists()
