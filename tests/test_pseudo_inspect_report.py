"""Inspection figures a person can check by hand (issue 16 item 4, issue 18 item 4): recall per image, per
object-size bucket and at IoU 0.3 / 0.5 / 0.7, matched boxes behind the purity, the tiles at a proposal cap,
legends on the overlays, a palette that keeps 256 clusters apart, and report.md.

The case: the real DOTA fixture tiles (P1888: 64 vehicles, a P0706 window: 313 objects, a blank tile) and a
hand-made boxes store whose boxes are ground-truth polygons shrunk about their centre by a linear factor s.
A shrunk convex polygon lies inside the original, so its IoU with it is exactly s^2: 1.0, 0.6 or 0.4.
"""
from __future__ import annotations

import colorsys
import json

import cv2
import numpy as np
import pytest

from mutdet_core.pseudo_labels import inspect_store
from mutdet_core.pseudo_labels.artifact import StageWriter, input_entry, stage_fingerprint
from mutdet_core.pseudo_labels.boxes import FORMAT, ROW_ARRAYS, le90
from mutdet_core.pseudo_labels.pictures import (BOX_MATCHED, BOX_UNMATCHED, GT_FOUND, GT_MISSED,
                                                LEGEND_BACKGROUND, LegendEntry, cluster_legend, draw_tile,
                                                palette, rgb_to_lab)
from mutdet_core.pseudo_labels.quality import QualityAccumulator
from mutdet_core.tiling.store import TileStore
from pseudo_label_fixtures import tile_store_path  # noqa: F401  (fixture)

# per tile: (IoU s^2 of the box with its object, how many objects get such a box), objects taken in label
# order among the convex ones; tile 2 (blank) gets 3 boxes and has no ground truth
PLAN = {0: [(1.0, 10), (0.6, 5), (0.4, 5)], 1: [(1.0, 5)]}
MAX_BOXES = 20  # tile 0 holds exactly 20 boxes: at the cap


def _convex(poly) -> bool:
    return bool(cv2.isContourConvex(np.asarray(poly, np.float32).reshape(4, 1, 2)))


def _shrink(poly, iou: float) -> np.ndarray:
    p = np.asarray(poly, np.float64).reshape(4, 2)
    centre = p.mean(axis=0)
    return (centre + (p - centre) * np.sqrt(iou)).reshape(8)


def _planned(tiles: TileStore) -> dict:
    """``{tile: [(object index, iou), ...]}`` following PLAN."""
    out = {}
    for i, plan in PLAN.items():
        gt = tiles.read_objects(i)["polygons"]
        convex = [j for j in range(len(gt)) if _convex(gt[j])]
        ious = [iou for iou, n in plan for _ in range(n)]
        out[i] = list(zip(convex[:len(ious)], ious))
    return out


def write_boxes_store(tiles: TileStore, path, planned: dict):
    rng = np.random.default_rng(0)
    params = {"source": "test", "max_boxes": MAX_BOXES, "min_size": 2, "angle_version": "le90"}
    inputs = {"tiles": input_entry(tiles)}
    attrs = {"params": params, "inputs": inputs, "tile_fingerprint": tiles.attrs["fingerprint"],
             "fingerprint": stage_fingerprint(FORMAT, params, {"tiles": inputs["tiles"]["fingerprint"]}),
             "tile_store": inputs["tiles"]["path"]}
    with StageWriter(path, FORMAT, tiles.index, ROW_ARRAYS, attrs) as writer:
        for i in range(len(tiles)):
            gt = tiles.read_objects(i)["polygons"]
            if i in planned:
                polys = np.array([_shrink(gt[j], iou) for j, iou in planned[i]], np.float32)
            else:  # the blank tile: boxes with no ground truth to compare with
                xy = rng.uniform(100, 600, (3, 2))
                polys = np.concatenate([xy, xy + [40, 0], xy + [40, 30], xy + [0, 30]], axis=1).astype(np.float32)
            rbox = np.array([le90(cv2.minAreaRect(p.reshape(4, 2))) for p in polys], np.float32)
            n = len(polys)
            writer.append_tile(i, {"rbox": rbox, "polygon": polys, "mask_area": np.full(n, 100, np.int64),
                                   "mask_index": np.full(n, -1, np.int64), "score": np.ones(n, np.float32)})
        return writer.finish()


@pytest.fixture(scope="module")
def inspected(tile_store_path, tmp_path_factory):  # noqa: F811
    tiles = TileStore.open(tile_store_path)
    planned = _planned(tiles)
    out = tmp_path_factory.mktemp("inspect_report")
    boxes = write_boxes_store(tiles, out / "boxes.zarr", planned)
    stats = inspect_store(boxes, out / "inspect", num_tiles=3)
    return {"tiles": tiles, "planned": planned, "stats": stats, "out": out / "inspect"}


def test_recall_per_image_and_iou_by_hand(inspected):
    written = json.loads((inspected["out"] / "stats.json").read_text())
    gt = written["ground_truth"]
    assert gt["gt_objects"] == 64 + 313
    # kept keys, as before: recall at iou_thr 0.5, recall_at_0.3, recall_at_0.7, per class
    assert gt["recall"] == pytest.approx(20 / 377)
    assert gt["recall_at_0.3"] == pytest.approx(25 / 377) and gt["recall_at_0.7"] == pytest.approx(15 / 377)
    assert gt["recall_at_0.5"] == gt["recall"]
    p1888, p0706 = gt["recall_per_image"]["P1888"], gt["recall_per_image"]["P0706"]
    assert set(gt["recall_per_image"]) == {"P1888", "P0706"}  # the blank image has no objects
    assert p1888["objects"] == 64 and p0706["objects"] == 313
    assert (p1888["recall_at_0.3"], p1888["recall_at_0.5"], p1888["recall_at_0.7"]) == pytest.approx(
        (20 / 64, 15 / 64, 10 / 64))
    assert p0706["recall_at_0.3"] == p0706["recall_at_0.7"] == pytest.approx(5 / 313)
    # mean best IoU of P1888: 10 objects at 1.0, 5 at 0.6, 5 at 0.4, the rest at ~0 (neighbours may touch)
    assert p1888["mean_best_iou"] == pytest.approx((10 + 3 + 2) / 64, abs=0.01)
    images = (inspected["out"] / "images.csv").read_text().splitlines()
    assert images[0].startswith("image_id,objects,recall,recall_at_0.3") and len(images) == 3


def test_recall_per_size_bucket_by_hand(inspected):
    gt = inspected["stats"]["ground_truth"]
    tiles = inspected["tiles"]
    expected = {name: {"objects": 0, 0.3: 0, 0.5: 0, 0.7: 0} for name in ("small", "medium", "large")}
    for i in range(2):
        polygons = tiles.read_objects(i)["polygons"]
        ious = dict(inspected["planned"][i])
        for j, poly in enumerate(polygons):
            side = np.sqrt(abs(cv2.contourArea(poly.reshape(4, 2))))
            name = "small" if side < 32 else "medium" if side < 96 else "large"
            expected[name]["objects"] += 1
            for t in (0.3, 0.5, 0.7):
                expected[name][t] += ious.get(j, 0.0) >= t - 1e-9
    assert gt["size_buckets"]["sqrt_area_px"] == {"small": [0, 32], "medium": [32, 96], "large": [96, None]}
    assert sum(e["objects"] for e in expected.values()) == 377
    assert expected["small"]["objects"] > 0 and expected["medium"]["objects"] > 0  # both buckets used
    for name, e in expected.items():
        r = gt["recall_per_size"][name]
        assert r["objects"] == e["objects"]
        for t in (0.3, 0.5, 0.7):
            assert r.get(f"recall_at_{t:g}", 0.0) == pytest.approx(e[t] / max(e["objects"], 1)), (name, t)


def test_matched_boxes_and_cap(inspected):
    stats = inspected["stats"]
    gt = stats["ground_truth"]
    # IoU >= 0.5: the 10 + 5 boxes of P1888 and 5 of P0706; the blank tile's 3 boxes are not compared
    assert gt["boxes_compared"] == 25 and gt["matched_boxes"] == 20
    assert gt["matched_boxes_fraction"] == pytest.approx(0.8)
    assert sum(gt["matched_boxes_per_class"].values()) == 20
    cap = stats["proposal_cap"]
    assert list(cap) == ["boxes"]  # no masks stage behind these boxes
    assert cap["boxes"]["key"] == "max_boxes" and cap["boxes"]["cap"] == MAX_BOXES
    assert cap["boxes"]["tiles_at_cap"] == 1 and cap["boxes"]["tiles_at_cap_names"] == ["P1888__800__0___0"]
    table = (inspected["out"] / "tiles.csv").read_text().splitlines()
    assert "boxes_at_cap" in table[0] and "recalled_at_0.3" in table[0] and "image_id" in table[0]
    report = (inspected["out"] / "report.md").read_text()
    assert "| boxes | `max_boxes` | 20 | 1 | 3 |" in report and "P1888__800__0___0" in report
    assert "| P1888 | 64 | 31.2 % | 23.4 % | 15.6 % |" in report  # 20, 15, 10 of 64
    assert "20 of the 25 pseudo-boxes in labelled tiles (80.0 %)" in report


def test_purity_rests_on_matched_boxes():
    """Two tiles of known overlaps: 3 matched boxes in clusters (0, 0, 1) of classes (a, b, b) -> purity 2/3."""
    square = np.array([[0, 0, 40, 0, 40, 40, 0, 40], [100, 0, 140, 0, 140, 40, 100, 40]], np.float64)
    quality = QualityAccumulator(["a", "b"], 0.5)
    quality.add_tile(square, [0, 1], np.concatenate([square, square[1:] + 300]), np.array([0, 0, 1]), "img1")
    quality.add_tile(square[1:], [1], square[1:], np.array([1]), "img2")
    summary = quality.summary()
    assert summary["matched_boxes"] == 3 and summary["boxes_compared"] == 4
    assert summary["cluster_purity"] == pytest.approx(2 / 3) and summary["clusters_with_matched_boxes"] == 2
    assert summary["matched_boxes_per_class"] == {"a": 1, "b": 2}
    assert summary["recall_per_image"] == {
        "img1": pytest.approx({"objects": 2, "recall": 1.0, "recall_at_0.3": 1.0, "recall_at_0.5": 1.0,
                               "recall_at_0.7": 1.0, "mean_best_iou": 1.0}),
        "img2": pytest.approx({"objects": 1, "recall": 1.0, "recall_at_0.3": 1.0, "recall_at_0.5": 1.0,
                               "recall_at_0.7": 1.0, "mean_best_iou": 1.0})}


def _colour_present(image_rgb: np.ndarray, colour) -> bool:
    return bool((np.abs(image_rgb.astype(int) - np.array(colour)).max(axis=2) <= 2).any())


def test_overlay_has_a_legend(inspected):
    picture = inspected["out"] / "tiles" / "P1888__800__0___0.png"
    image = cv2.imread(str(picture))[..., ::-1]
    assert image.shape[1] == 800 and image.shape[0] > 800  # the legend strip under the tile
    strip = image[800:]
    assert (strip == LEGEND_BACKGROUND).all(axis=2).mean() > 0.5
    # one swatch per meaning: ground truth found / missed, box matching / not matching
    for colour in (GT_FOUND, GT_MISSED, BOX_MATCHED, BOX_UNMATCHED):
        assert _colour_present(strip, colour), colour
    # the legend text is drawn (light pixels beyond the swatches)
    assert ((strip > 200).all(axis=2)).sum() > 200


def test_cluster_legend_names_the_tile_clusters_and_fits():
    colours = palette(256)
    clusters = np.array([5] * 7 + [200] * 3 + list(range(30)))
    names = [f"cluster_{c + 1}" for c in range(256)]
    entries = cluster_legend(clusters, colours, names, max_entries=10)
    assert entries[0].label == "cluster_6 (8)" and entries[1].label == "cluster_201 (3)"
    assert np.array_equal(entries[0].colours[0], colours[5])
    assert len(entries) == 11 and entries[-1].label.startswith("+21 more clusters")
    pixels = np.full((400, 400, 3), 90, np.uint8)
    image = draw_tile(pixels, np.zeros((0, 8)), colours[:0], legend=[LegendEntry("x", [c]) for c in colours[:40]])
    assert image.shape[1] == 400 and image.shape[0] > 400 + 22  # wrapped onto several rows
    for c in colours[:40]:
        assert _colour_present(image[400:], c)


def test_palette_keeps_256_clusters_apart():
    def min_distance(rgb):
        lab = rgb_to_lab(rgb)
        d = np.linalg.norm(lab[:, None] - lab[None], axis=2)
        np.fill_diagonal(d, np.inf)
        return d.min()

    golden = np.array([[255 * c for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 1.0)] for i in range(256)])
    assert min_distance(golden[:64]) < 2  # the former palette: neighbours in hue merge
    assert min_distance(palette(64)) > 20 and min_distance(palette(256)) > 10  # CIE76 Delta E
    assert np.array_equal(palette(256)[:64], palette(64))  # a cluster keeps its colour
    # none near the ground-truth colours
    assert np.linalg.norm(rgb_to_lab(palette(256))[:, None] - rgb_to_lab([GT_FOUND, GT_MISSED])[None],
                          axis=2).min() > 25
