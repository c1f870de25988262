"""Rotated NMS against a DOTA-devkit-style shapely loop, class-wise NMS, and the devkit's real merge output."""
from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np
import pytest
import shapely
import torch

from mutdet_core.geometry import batched_rotated_nms, obb2poly, poly_iou, rotated_nms

PI = math.pi


def clustered_obbs(rng, clusters=40, per_cluster=8, offset=0.0):
    """Groups of jittered copies of a box: many pairs around any IoU threshold."""
    base = np.stack([rng.uniform(0, 600, clusters), rng.uniform(0, 600, clusters), rng.uniform(10, 60, clusters),
                     rng.uniform(5, 30, clusters), rng.uniform(-PI, PI, clusters)], axis=1)
    boxes = np.repeat(base, per_cluster, axis=0)
    boxes[:, :2] += rng.normal(0, 4, (len(boxes), 2)) + offset
    boxes[:, 2:4] *= rng.uniform(0.8, 1.2, (len(boxes), 2))
    boxes[:, 4] += rng.normal(0, 0.2, len(boxes))
    return boxes


def devkit_nms_shapely(polys, scores, thresh):
    """``py_cpu_nms_poly`` of the DOTA devkit with shapely IoU (stable score order: lower index first on ties)."""
    geoms = shapely.polygons(polys.reshape(-1, 4, 2))
    areas = shapely.area(geoms)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        inter = shapely.area(shapely.intersection(geoms[i], geoms[rest]))
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= thresh]
    return np.array(keep, dtype=np.int64)


@pytest.mark.parametrize("thresh", [0.1, 0.3, 0.5, 0.7])
def test_rotated_nms_matches_devkit_loop(thresh):
    rng = np.random.default_rng(int(thresh * 10))
    obbs = clustered_obbs(rng)
    scores = rng.uniform(size=len(obbs))
    ref = devkit_nms_shapely(obb2poly(obbs), scores, thresh)
    keep = rotated_nms(obbs, scores, thresh)
    assert keep.dtype == np.int64
    np.testing.assert_array_equal(keep, ref)
    assert 5 < len(keep) < len(obbs)
    # Polygon input and torch input give the same answer.
    np.testing.assert_array_equal(rotated_nms(obb2poly(obbs), scores, thresh), ref)
    t = rotated_nms(torch.from_numpy(obbs).float(), torch.from_numpy(scores), thresh)
    assert t.dtype == torch.long
    np.testing.assert_array_equal(t.numpy(), ref)


def test_kept_indices_are_sorted_by_score_and_ties_keep_input_order():
    rng = np.random.default_rng(1)
    obbs = clustered_obbs(rng, clusters=30, per_cluster=3)
    obbs[:, :2] = np.arange(len(obbs))[:, None] * 1000.0  # all disjoint: everything is kept
    scores = np.round(rng.uniform(size=len(obbs)), 1)  # many ties
    keep = rotated_nms(obbs, scores, 0.5)
    assert len(keep) == len(obbs)
    np.testing.assert_array_equal(keep, np.argsort(-scores, kind="stable"))


def test_threshold_is_strict():
    # Nested axis-aligned boxes with IoU exactly 0.5 (2 / 4): kept at 0.5, suppressed just below.
    big = np.array([0.0, 0, 4, 0, 4, 1, 0, 1])
    small = np.array([0.0, 0, 2, 0, 2, 1, 0, 1])
    polys = np.stack([big, small])
    assert poly_iou(polys[:1], polys[1:])[0, 0] == 0.5
    np.testing.assert_array_equal(rotated_nms(polys, np.array([0.9, 0.8]), 0.5), [0, 1])
    np.testing.assert_array_equal(rotated_nms(polys, np.array([0.9, 0.8]), 0.49), [0])
    np.testing.assert_array_equal(rotated_nms(polys, np.array([0.7, 0.8]), 0.49), [1])


def test_batched_nms_is_class_wise():
    rng = np.random.default_rng(2)
    obbs = clustered_obbs(rng, offset=-300.0)  # negative coordinates: where offset tricks go wrong
    scores = rng.uniform(size=len(obbs))
    classes = rng.integers(0, 4, len(obbs))
    keep = batched_rotated_nms(obbs, scores, classes, 0.3)
    polys = obb2poly(obbs)
    ref = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        ref.extend(idx[devkit_nms_shapely(polys[idx], scores[idx], 0.3)])
    ref = np.array(ref)[np.argsort(-scores[ref], kind="stable")]
    np.testing.assert_array_equal(keep, ref)
    assert len(keep) > len(rotated_nms(obbs, scores, 0.3))
    t = batched_rotated_nms(torch.from_numpy(obbs), torch.from_numpy(scores), torch.from_numpy(classes), 0.3)
    np.testing.assert_array_equal(t.numpy(), keep)
    # Identical boxes of two classes both survive.
    same = np.array([[-50.0, -50.0, 20.0, 10.0, 0.3]] * 2)
    np.testing.assert_array_equal(batched_rotated_nms(same, np.array([0.5, 0.9]), np.array([0, 1]), 0.1), [1, 0])
    np.testing.assert_array_equal(rotated_nms(same, np.array([0.5, 0.9]), 0.1), [1])


def test_edge_cases():
    assert rotated_nms(np.zeros((0, 5)), np.zeros(0), 0.5).shape == (0,)
    np.testing.assert_array_equal(rotated_nms(np.array([[0.0, 0, 10, 5, 0]]), np.array([0.3]), 0.5), [0])
    # Degenerate boxes overlap nothing, so they are kept.
    boxes = np.array([[0.0, 0, 10, 5, 0], [0.0, 0, 0, 5, 0], [1.0, 0, 10, 5, 0]])
    np.testing.assert_array_equal(rotated_nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5), [0, 1])
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        rotated_nms(boxes, np.array([0.9, 0.8]), 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        rotated_nms(boxes, np.array([0.9, 0.8, 0.7]), 1.5)
    with pytest.raises(ValueError, match="scores contains NaN"):
        rotated_nms(boxes, np.array([0.9, np.nan, 0.7]), 0.5)
    with pytest.raises(ValueError, match="class ids"):
        batched_rotated_nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 1]), 0.5)


def _greedy_valid(polys, scores, kept, thresh):
    """Kept boxes do not overlap above thresh; every dropped box overlaps a kept one with a score >= its own."""
    iou = poly_iou(polys, polys)
    np.fill_diagonal(iou, 0.0)
    k = np.zeros(len(polys), dtype=bool)
    k[kept] = True
    if (iou[np.ix_(k, k)] > thresh).any():
        return False
    return all(((iou[r, k] > thresh) & (scores[k] >= scores[r])).any() for r in np.flatnonzero(~k))


def test_reproduces_the_devkit_merge_of_real_detections(shared_data):
    """Real tile detections merged to full images with the devkit's polygon NMS at 0.3 (ResultMerge).

    Scores have 3 decimals, so equal-score overlapping pairs exist; the devkit orders ties by numpy's
    unstable argsort. So: same number kept in every (class, image), and both our set and the devkit's
    are valid greedy results under our IoU (which would fail if our IoU or the > rule differed).
    """
    from mutdet_core.datasets.dota import read_task1_folder

    root = shared_data / "dota_sample" / "example_split"
    dets, merged = read_task1_folder(root / "dota_dets"), read_task1_folder(root / "merged_dets")
    groups = 0
    for cls, items in dets.items():
        by_image = defaultdict(list)
        for tile, score, poly in items:
            name, rate, x, y = re.match(r"(.*)__([\d.]+)__(\d+)___(\d+)", tile).groups()
            p = poly.copy()
            p[0::2], p[1::2] = (p[0::2] + int(x)) / float(rate), (p[1::2] + int(y)) / float(rate)
            by_image[name].append((score, p))
        ref_by_image = defaultdict(list)
        for name, _, poly in merged.get(cls, []):
            ref_by_image[name].append(poly)
        for name, rows in by_image.items():
            scores = np.array([s for s, _ in rows])
            polys = np.stack([p for _, p in rows])
            keep = rotated_nms(polys, scores, 0.3)
            ref = np.stack(ref_by_image[name])
            dist = np.abs(polys[:, None] - ref[None]).max(-1)
            assert (dist.min(0) < 0.051).all()  # every merged box is one of the input boxes
            assert len(keep) == len(ref), (cls, name)
            assert _greedy_valid(polys, scores, keep, 0.3)
            assert _greedy_valid(polys, scores, dist.argmin(0), 0.3)
            groups += 1
    assert groups == 30


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(3)
    obbs = clustered_obbs(rng)
    scores = rng.uniform(size=len(obbs))
    classes = rng.integers(0, 3, len(obbs))
    gpu = batched_rotated_nms(torch.from_numpy(obbs).cuda(), torch.from_numpy(scores).cuda(),
                              torch.from_numpy(classes).cuda(), 0.3)
    assert gpu.device.type == "cuda"
    np.testing.assert_array_equal(gpu.cpu().numpy(), batched_rotated_nms(obbs, scores, classes, 0.3))
