"""Exact rotated IoU / IoF against shapely, edge cases, prefilter and chunking, real DOTA polygons."""
from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
import torch

import mutdet_core.geometry.polygon_iou as polygon_iou
from mutdet_core.geometry import obb2poly, obb_iou, poly_iou, regularize_obb

PI = math.pi


def random_obbs(rng, n, lo=0.0, hi=100.0, size=(1.0, 40.0)):
    return np.stack([rng.uniform(lo, hi, n), rng.uniform(lo, hi, n), rng.uniform(*size, n), rng.uniform(*size, n),
                     rng.uniform(-PI, PI, n)], axis=1)


def random_convex_quads(rng, n):
    """Convex quadrilaterals: 4 points on a random ellipse in angular order, half of them clockwise."""
    angles = np.sort(rng.uniform(0, 2 * PI, (n, 4)), axis=1)
    r = rng.uniform(5, 30, (n, 2))
    rot = rng.uniform(0, 2 * PI, (n, 1))
    x, y = r[:, :1] * np.cos(angles), r[:, 1:] * np.sin(angles)
    px = x * np.cos(rot) - y * np.sin(rot) + rng.uniform(0, 80, (n, 1))
    py = x * np.sin(rot) + y * np.cos(rot) + rng.uniform(0, 80, (n, 1))
    pts = np.stack([px, py], axis=-1)
    pts[::2] = pts[::2, ::-1]
    return pts.reshape(n, 8)


def shapely_overlaps(pa, pb, mode="iou", aligned=False):
    ga, gb = shapely.polygons(pa.reshape(-1, 4, 2)), shapely.polygons(pb.reshape(-1, 4, 2))
    if not aligned:
        ga, gb = ga[:, None], gb[None]
    inter = shapely.area(shapely.intersection(ga, gb))
    area_a = shapely.area(ga)
    denom = area_a + shapely.area(gb) - inter if mode == "iou" else area_a + 0 * inter
    return np.where(denom > 0, inter / np.where(denom > 0, denom, 1), 0.0)


@pytest.mark.parametrize("mode", ["iou", "iof"])
def test_obb_iou_matches_shapely_pairwise(mode):
    rng = np.random.default_rng(0)
    a, b = random_obbs(rng, 300), random_obbs(rng, 250)
    ours = obb_iou(a, b, mode=mode)
    ref = shapely_overlaps(obb2poly(a), obb2poly(b), mode)
    assert ours.shape == (300, 250)
    assert (ref > 0).sum() > 5000  # the test really exercises overlapping pairs
    assert np.abs(ours - ref).max() < 1e-5


def test_obb_iou_matches_shapely_aligned_heavy_overlap():
    rng = np.random.default_rng(1)
    a = random_obbs(rng, 4000, hi=1000.0)
    b = a + np.concatenate([rng.normal(0, 3, (4000, 4)), rng.normal(0, 0.3, (4000, 1))], axis=1)
    b[:, 2:4] = np.abs(b[:, 2:4])
    for mode in ("iou", "iof"):
        ours = obb_iou(a, b, mode=mode, aligned=True)
        ref = shapely_overlaps(obb2poly(a), obb2poly(b), mode, aligned=True)
        assert ours.shape == (4000,) and np.abs(ours - ref).max() < 1e-5


def test_poly_iou_matches_shapely_either_orientation():
    rng = np.random.default_rng(2)
    a, b = random_convex_quads(rng, 250), random_convex_quads(rng, 200)
    for mode in ("iou", "iof"):
        ours = poly_iou(a, b, mode=mode)
        ref = shapely_overlaps(a, b, mode)
        assert (ref > 0).sum() > 2000 and np.abs(ours - ref).max() < 1e-5


def test_numpy_and_torch_agree_and_dtypes():
    rng = np.random.default_rng(3)
    a, b = random_obbs(rng, 200), random_obbs(rng, 150)
    ref = obb_iou(a, b)
    t = obb_iou(torch.from_numpy(a), torch.from_numpy(b))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    np.testing.assert_array_equal(t.numpy(), ref)
    # float32 inputs: computed in float64, returned as float32.
    f32 = obb_iou(a.astype(np.float32), b.astype(np.float32))
    assert f32.dtype == np.float32 and np.abs(f32 - ref).max() < 1e-3
    assert obb_iou(torch.from_numpy(a).float(), b).dtype == torch.float32  # mixed: torch out
    pa, pb = obb2poly(a), obb2poly(b)
    np.testing.assert_allclose(poly_iou(pa, pb), ref, atol=1e-12)
    np.testing.assert_allclose(poly_iou(torch.from_numpy(pa), torch.from_numpy(pb), mode="iof").numpy(),
                               obb_iou(a, b, mode="iof"), atol=1e-12)


def test_iou_does_not_depend_on_angle_version():
    rng = np.random.default_rng(4)
    obbs = random_obbs(rng, 300)
    for v in ("le90", "le135", "oc"):
        np.testing.assert_allclose(obb_iou(obbs, regularize_obb(obbs, v), aligned=True, version=v), 1.0, atol=1e-9)


def test_identical_disjoint_nested():
    box = np.array([[50.0, 50.0, 40.0, 10.0, 0.7]])
    assert obb_iou(box, box)[0, 0] == pytest.approx(1.0, abs=1e-12)
    far = box + [[100.0, 0, 0, 0, 0]]
    assert obb_iou(box, far)[0, 0] == 0.0
    # Nested: a 10x4 box inside a 40x10 box, same centre, rotated differently.
    inner = np.array([[50.0, 50.0, 10.0, 4.0, 1.0]])
    assert obb_iou(inner, box)[0, 0] == pytest.approx(40.0 / 400.0, abs=1e-12)
    assert obb_iou(inner, box, mode="iof")[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert obb_iou(box, inner, mode="iof")[0, 0] == pytest.approx(0.1, abs=1e-12)
    # Squares (w == h) rotated by 45 degrees against the same square unrotated: an octagon.
    sq = np.array([[0.0, 0.0, 2.0, 2.0, 0.0]])
    sq45 = np.array([[0.0, 0.0, 2.0, 2.0, PI / 4]])
    octagon = 8 * (math.sqrt(2) - 1)
    assert obb_iou(sq, sq45)[0, 0] == pytest.approx(octagon / (8 - octagon), abs=1e-12)


@pytest.mark.parametrize("theta", [0.0, 0.3, -PI / 2, PI / 4, 1.234])
def test_touching_boxes_give_zero(theta):
    a = np.array([[20.0, 30.0, 8.0, 4.0, theta]])
    c, s = math.cos(theta), math.sin(theta)
    edge = a + [[8.0 * c, 8.0 * s, 0, 0, 0]]  # shares the full right edge
    half_edge = a + [[8.0 * c - 4.0 * (-s) / 2, 8.0 * s - 4.0 * c / 2, 0, 0, 0]]  # shares half of it
    corner = a + [[8.0 * c - 4.0 * s, 8.0 * s + 4.0 * c, 0, 0, 0]]  # meets only at a corner
    for other in (edge, half_edge, corner):
        for mode in ("iou", "iof"):
            v = obb_iou(a, other, mode=mode)[0, 0]
            assert np.isfinite(v) and abs(v) < 1e-9
    # Same for the polygon path, with the second box as a clockwise polygon.
    pa, pe = obb2poly(a), obb2poly(edge)[:, ::-1].copy()
    assert abs(poly_iou(pa, pe)[0, 0]) < 1e-9


def test_degenerate_boxes_give_zero_without_nan():
    a = np.array([[10.0, 10.0, 0.0, 5.0, 0.3], [10.0, 10.0, 0.0, 0.0, 0.0], [10.0, 10.0, 6.0, 5.0, 0.3]])
    for mode in ("iou", "iof"):
        m = obb_iou(a, a, mode=mode)
        assert np.isfinite(m).all()
        np.testing.assert_array_equal(m[:2], 0.0)
        np.testing.assert_array_equal(m[:, :2], 0.0)
        assert m[2, 2] == pytest.approx(1.0)
        np.testing.assert_array_equal(obb_iou(a, a, mode=mode, aligned=True)[:2], 0.0)
    line = np.array([[0.0, 0, 10, 10, 20, 20, 30, 30]])  # collinear quadrilateral
    assert poly_iou(line, obb2poly(a[2:]))[0, 0] == 0.0


def test_empty_inputs():
    assert obb_iou(np.zeros((0, 5)), np.ones((3, 5))).shape == (0, 3)
    assert obb_iou(np.ones((2, 5)), np.zeros((0, 5))).shape == (2, 0)
    assert obb_iou(np.zeros((0, 5)), np.zeros((0, 5)), aligned=True).shape == (0,)
    assert poly_iou(torch.zeros(0, 8), torch.zeros(4, 8)).shape == (0, 4)


def test_prefilter_and_chunks_on_a_large_sparse_scene(monkeypatch):
    # 1500 small boxes on a 4000 x 4000 image: few overlaps. Small blocks and chunks exercise the loops.
    monkeypatch.setattr(polygon_iou, "PAIR_CHUNK", 97)
    monkeypatch.setattr(polygon_iou, "SWEEP_CHUNK", 50)
    rng = np.random.default_rng(5)
    a, b = random_obbs(rng, 1500, hi=4000.0, size=(5, 60)), random_obbs(rng, 1200, hi=4000.0, size=(5, 60))
    a[:3, 2:4] = [[3000.0, 40.0], [900.0, 800.0], [60.0, 2500.0]]  # a few huge boxes span many small ones
    b[:5] = a[:5]  # identical boxes: equal sweep keys
    ours = obb_iou(a, b)
    ga, gb = shapely.polygons(obb2poly(a).reshape(-1, 4, 2)), shapely.polygons(obb2poly(b).reshape(-1, 4, 2))
    jb, ia = shapely.STRtree(gb).query(ga, predicate="intersects")
    inter = shapely.area(shapely.intersection(ga[jb], gb[ia]))
    ref = np.zeros_like(ours)
    ref[jb, ia] = inter / (shapely.area(ga[jb]) + shapely.area(gb[ia]) - inter)
    assert (ref > 0).sum() > 100
    assert np.abs(ours - ref).max() < 1e-5


def test_real_dota_polygons_against_shapely(shared_data):
    from mutdet_core.datasets.dota import read_dota_txt

    for name in ("P0706", "P1234"):
        polys = read_dota_txt(shared_data / "dota_sample" / "labelTxt" / f"{name}.txt").polygons
        ours = poly_iou(polys, polys)
        ref = shapely_overlaps(polys, polys)
        assert np.abs(ours - ref).max() < 1e-5
        assert (ref > 0).sum() > len(polys)  # some real annotations overlap each other


def test_nonconvex_quadrilaterals_raise_or_use_hull():
    bow_tie = np.array([[0.0, 0, 10, 10, 10, 0, 0, 10]])
    concave = np.array([[0.0, 0, 10, 0, 3, 3, 0, 10]])
    square = np.array([[0.0, 0, 10, 0, 10, 10, 0, 10]])
    with pytest.raises(ValueError, match=r"poly_iou: a has 1 non-convex.*rows: \[0\]"):
        poly_iou(bow_tie, square)
    with pytest.raises(ValueError, match="non-convex"):
        poly_iou(square, concave)
    assert poly_iou(bow_tie, square, nonconvex="hull")[0, 0] == pytest.approx(1.0)
    assert poly_iou(concave, square, nonconvex="hull")[0, 0] == pytest.approx(0.5)


def test_bad_input_raises():
    good = np.ones((2, 5))
    with pytest.raises(ValueError, match=r"obb_iou: a must have shape \(N, 5\)"):
        obb_iou(np.ones((2, 8)), good)
    with pytest.raises(ValueError, match="NaN"):
        obb_iou(np.array([[0, 0, np.nan, 1, 0]]), good)
    with pytest.raises(ValueError, match="negative width"):
        obb_iou(good, np.array([[0, 0, -1.0, 1, 0]]))
    with pytest.raises(ValueError, match="mode"):
        obb_iou(good, good, mode="giou")
    with pytest.raises(ValueError, match="aligned"):
        obb_iou(good, np.ones((3, 5)), aligned=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(6)
    a, b = random_obbs(rng, 500), random_obbs(rng, 400)
    gpu = obb_iou(torch.from_numpy(a).cuda().float(), torch.from_numpy(b).cuda().float())
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    np.testing.assert_allclose(gpu.cpu().numpy(), obb_iou(a, b), atol=1e-5)
