"""Oriented-box conversions: conventions, round trips, boundaries, numpy/torch agreement, real DOTA polygons."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from mutdet_core.geometry import (convert_version, get_best_begin_point, norm_angle, obb2hbb, obb2poly, obb_iou,
                                  poly2hbb, poly2obb, poly2obb_min_area, poly_iou, regularize_obb, valid_obb_mask)

VERSIONS = ("le90", "le135", "oc")
PI = math.pi


def random_obbs(rng, n, theta_range=(-4 * PI, 4 * PI)):
    return np.stack([rng.uniform(-50, 1000, n), rng.uniform(-50, 1000, n), rng.uniform(2, 200, n),
                     rng.uniform(2, 200, n), rng.uniform(*theta_range, n)], axis=1)


def assert_same_point_sets(p, q, tol=1e-7):
    """Rows of (N, 8) p and q are the same 4 points in any order."""
    a, b = np.asarray(p).reshape(-1, 4, 1, 2), np.asarray(q).reshape(-1, 1, 4, 2)
    d = np.linalg.norm(a - b, axis=-1)
    assert d.min(axis=2).max() < tol and d.min(axis=1).max() < tol


def assert_in_range(obbs, version, tol=0.0):
    w, h, t = obbs[..., 2], obbs[..., 3], obbs[..., 4]
    if version == "le90":
        assert (w >= h).all() and (t >= -PI / 2 - tol).all() and (t < PI / 2 + tol).all()
    elif version == "le135":
        assert (w >= h).all() and (t >= -PI / 4 - tol).all() and (t < 3 * PI / 4 + tol).all()
    else:
        assert (t > -tol).all() and (t <= PI / 2 + tol).all()


def test_obb2poly_corner_order_at_theta_zero():
    poly = obb2poly(np.array([[10.0, 20.0, 8.0, 4.0, 0.0]]))
    # TL, TR, BR, BL on screen (y down): mmrotate 0.x order.
    np.testing.assert_allclose(poly, [[6, 18, 14, 18, 14, 22, 6, 22]])


def test_obb2poly_rotation_is_clockwise_on_screen():
    # theta = +pi/2 turns the w-axis from +x to +y: a 8x4 box becomes 4 wide and 8 tall.
    poly = obb2poly(np.array([[0.0, 0.0, 8.0, 4.0, PI / 2]]))
    np.testing.assert_allclose(poly, [[2, -4, 2, 4, -2, 4, -2, -4]], atol=1e-12)
    np.testing.assert_allclose(poly2hbb(poly), [[-2, -4, 2, 4]], atol=1e-12)


@pytest.mark.parametrize("version", VERSIONS)
def test_round_trip_poly_obb_poly_all_versions(version):
    rng = np.random.default_rng(1)
    polys = obb2poly(random_obbs(rng, 3000))
    # Any cyclic start and either direction is a valid corner order of the same rectangle.
    pts = polys.reshape(-1, 4, 2)
    shifted = np.roll(pts, 1, axis=1).reshape(-1, 8)
    reversed_ = pts[:, ::-1].reshape(-1, 8)
    for p in (polys, shifted, reversed_):
        obbs = poly2obb(p, version)
        assert_in_range(obbs, version)
        assert_same_point_sets(obb2poly(obbs, version), p, tol=1e-8)
        obbs_min = poly2obb_min_area(p, version)
        assert_in_range(obbs_min, version)
        assert_same_point_sets(obb2poly(obbs_min, version), p, tol=1e-8)


@pytest.mark.parametrize("version", VERSIONS)
def test_regularize_keeps_rectangle_and_range(version):
    rng = np.random.default_rng(2)
    obbs = random_obbs(rng, 3000)
    obbs[:500, 3] = obbs[:500, 2]  # squares: w == h
    reg = regularize_obb(obbs, version)
    assert_in_range(reg, version)
    assert_same_point_sets(obb2poly(reg), obb2poly(obbs), tol=1e-8)
    np.testing.assert_array_equal(reg[:, :2], obbs[:, :2])
    # Idempotent.
    np.testing.assert_allclose(regularize_obb(reg, version), reg, atol=1e-12)


def test_convert_version_chain_returns_to_start():
    rng = np.random.default_rng(3)
    le90 = regularize_obb(random_obbs(rng, 2000), "le90")
    oc = convert_version(le90, "le90", "oc")
    le135 = convert_version(oc, "oc", "le135")
    back = convert_version(le135, "le135", "le90")
    for x, v in ((oc, "oc"), (le135, "le135"), (back, "le90")):
        assert_in_range(x, v)
    np.testing.assert_allclose(back, le90, atol=1e-9)
    np.testing.assert_allclose(obb_iou(le90, oc, aligned=True), 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="dst"):
        convert_version(le90, "le90", "le180")


@pytest.mark.parametrize(
    "obb, version, expected",
    [
        ((0, 0, 5, 2, -PI / 2), "le90", (0, 0, 5, 2, -PI / 2)),  # lower end is included
        ((0, 0, 5, 2, PI / 2), "le90", (0, 0, 5, 2, -PI / 2)),  # upper end is not
        ((0, 0, 5, 2, PI), "le90", (0, 0, 5, 2, 0.0)),
        ((0, 0, 2, 5, 0.0), "le90", (0, 0, 5, 2, -PI / 2)),  # short w: swap, +pi/2, wrap
        ((0, 0, 4, 4, PI / 2), "le90", (0, 0, 4, 4, -PI / 2)),  # square: no swap
        ((0, 0, 5, 2, -PI / 4), "le135", (0, 0, 5, 2, -PI / 4)),
        ((0, 0, 5, 2, 3 * PI / 4), "le135", (0, 0, 5, 2, -PI / 4)),
        ((0, 0, 5, 2, PI / 4), "le135", (0, 0, 5, 2, PI / 4)),
        ((0, 0, 2, 5, PI / 4), "le135", (0, 0, 5, 2, 3 * PI / 4 - PI)),
        ((0, 0, 5, 2, PI / 2), "oc", (0, 0, 5, 2, PI / 2)),  # upper end included
        ((0, 0, 5, 2, 0.0), "oc", (0, 0, 2, 5, PI / 2)),  # lower end excluded: quarter turn swaps w, h
        ((0, 0, 5, 2, -PI / 2), "oc", (0, 0, 5, 2, PI / 2)),  # half turn: no swap
        ((0, 0, 5, 2, PI / 4), "oc", (0, 0, 5, 2, PI / 4)),
        ((0, 0, 5, 2, -PI / 4), "oc", (0, 0, 2, 5, PI / 4)),
    ],
)
def test_boundary_angles(obb, version, expected):
    out = regularize_obb(np.array([obb], dtype=np.float64), version)[0]
    np.testing.assert_allclose(out, expected, atol=1e-12)
    assert_in_range(out[None], version)


def test_norm_angle_matches_mmrotate_formula_and_never_hits_the_open_end():
    theta = np.linspace(-10, 10, 2001)
    np.testing.assert_allclose(norm_angle(theta, "le90"), (theta + PI / 2) % PI - PI / 2, atol=1e-12)
    np.testing.assert_allclose(norm_angle(theta, "le135"), (theta + PI / 4) % PI - PI / 4, atol=1e-12)
    np.testing.assert_array_equal(norm_angle(theta, "oc"), theta)
    # One ulp below -pi/2: the plain formula rounds (x + pi/2) % pi up to pi and returns +pi/2 (excluded).
    x = np.nextafter(-PI / 2, -np.inf)
    assert (x + PI / 2) % PI - PI / 2 == PI / 2
    assert norm_angle(x, "le90") == -PI / 2
    assert norm_angle(np.array([x]), "le90")[0] == -PI / 2
    assert norm_angle(np.nextafter(-PI / 4, -1.0), "le135") < 3 * PI / 4
    assert isinstance(norm_angle(1.0, "le90"), float)


def test_edge_based_rule_follows_mmrotate_on_non_rectangles():
    # A parallelogram: |p1p2| = 10 > |p2p3|, so theta is the p1->p2 direction and the centre the p1-p3 midpoint.
    poly = np.array([[0.0, 0.0, 10.0, 0.0, 12.0, 3.0, 2.0, 3.0]])
    np.testing.assert_allclose(poly2obb(poly, "le90"), [[6.0, 1.5, 10.0, math.hypot(2, 3), 0.0]])
    # Square: the tie takes the p1->p4 direction (mmrotate's strict edge1 > edge2).
    sq = np.array([[0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]])
    np.testing.assert_allclose(poly2obb(sq, "le90"), [[2, 2, 4, 4, -PI / 2]])


def test_min_area_rectangle_matches_cv2_on_random_quadrilaterals():
    rng = np.random.default_rng(4)
    quads = rng.uniform(0, 100, size=(500, 8))  # arbitrary, often concave or self-intersecting
    ours = poly2obb_min_area(quads, "le90")
    cv_area = np.array([np.prod(cv2.minAreaRect(q.reshape(4, 2).astype(np.float32))[1]) for q in quads])
    np.testing.assert_allclose(ours[:, 2] * ours[:, 3], cv_area, rtol=1e-4)
    # It encloses every point: each point's projection lies within the half-extents.
    pts = quads.reshape(-1, 4, 2) - ours[:, None, :2]
    u = np.stack([np.cos(ours[:, 4]), np.sin(ours[:, 4])], -1)[:, None]
    v = np.stack([-np.sin(ours[:, 4]), np.cos(ours[:, 4])], -1)[:, None]
    assert (np.abs((pts * u).sum(-1)) <= ours[:, None, 2] / 2 + 1e-9).all()
    assert (np.abs((pts * v).sum(-1)) <= ours[:, None, 3] / 2 + 1e-9).all()


def test_min_area_point_sets_ragged_and_degenerate():
    rng = np.random.default_rng(5)
    many = rng.normal(size=(3, 60)) * 30 + 500  # 30 points each: hull path
    ours = poly2obb_min_area(many, "le135")
    for row, pts in zip(ours, many):
        (_, _), (w, h), _ = cv2.minAreaRect(pts.reshape(-1, 2).astype(np.float32))
        assert row[2] * row[3] == pytest.approx(w * h, rel=1e-4)
    ragged = poly2obb_min_area([many[0].reshape(-1, 2), many[1].reshape(-1, 2)[:7]], "le135")
    np.testing.assert_allclose(ragged[0], ours[0], atol=1e-9)
    line = poly2obb_min_area(np.array([[0.0, 0, 1, 1, 2, 2, 3, 3]]), "le90")  # collinear: zero height
    np.testing.assert_allclose(line, [[1.5, 1.5, 3 * math.sqrt(2), 0.0, PI / 4]], atol=1e-12)
    point = poly2obb_min_area(np.array([[7.0, 7, 7, 7, 7, 7, 7, 7]]), "le90")
    np.testing.assert_allclose(point, [[7, 7, 0, 0, 0]])
    assert not valid_obb_mask(line).any()


def test_min_area_on_real_dota_polygons(shared_data):
    from mutdet_core.datasets.dota import read_dota_txt

    polys = np.concatenate([read_dota_txt(p).polygons for p in sorted((shared_data / "dota_sample" / "labelTxt")
                                                                       .glob("*.txt"))])
    ours = poly2obb_min_area(polys, "le90")
    cv_area = np.array([np.prod(cv2.minAreaRect(q.reshape(4, 2).astype(np.float32))[1]) for q in polys])
    np.testing.assert_allclose(ours[:, 2] * ours[:, 3], cv_area, rtol=1e-5, atol=1e-3)
    assert_in_range(ours, "le90")
    keep = valid_obb_mask(ours)
    # The rectangle contains the annotated polygon.
    np.testing.assert_allclose(poly_iou(polys[keep], obb2poly(ours[keep]), mode="iof", aligned=True), 1.0, atol=1e-9)


def test_valid_obb_mask_uses_mmrotate_rule():
    obbs = np.array([[0, 0, 2, 2, 0], [0, 0, 1.99, 50, 0], [0, 0, 50, 1.5, 0], [0, 0, 3, 3, 1]], dtype=float)
    np.testing.assert_array_equal(valid_obb_mask(obbs), [True, False, False, True])
    np.testing.assert_array_equal(valid_obb_mask(torch.tensor(obbs), min_size=3).numpy(), [False, False, False, True])


def _best_begin_point_reference(c):
    """The mmrotate/devkit loop, one polygon at a time."""
    x = [(c[0], c[1]), (c[2], c[3]), (c[4], c[5]), (c[6], c[7])]
    xs, ys = [p[0] for p in x], [p[1] for p in x]
    dst = [(min(xs), min(ys)), (max(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys))]
    best, force = 0, 1e8
    for i in range(4):
        comb = x[i:] + x[:i]
        f = sum(math.dist(comb[k], dst[k]) for k in range(4))
        if f < force:
            force, best = f, i
    return np.array(x[best:] + x[:best]).reshape(8)


def test_get_best_begin_point_matches_devkit_loop():
    rng = np.random.default_rng(6)
    polys = obb2poly(random_obbs(rng, 400))
    with_score = np.concatenate([polys, rng.uniform(size=(400, 1))], axis=1)
    out = get_best_begin_point(with_score)
    np.testing.assert_allclose(out[:, :8], np.stack([_best_begin_point_reference(p) for p in polys]))
    np.testing.assert_array_equal(out[:, 8], with_score[:, 8])
    # A BR-first axis-aligned box comes back TL-first.
    br_first = np.array([[14.0, 22, 6, 22, 6, 18, 14, 18]])
    np.testing.assert_allclose(get_best_begin_point(br_first), [[6, 18, 14, 18, 14, 22, 6, 22]])


def test_hbb_of_obb_equals_hbb_of_its_polygon():
    rng = np.random.default_rng(7)
    obbs = random_obbs(rng, 1000)
    np.testing.assert_allclose(obb2hbb(obbs), poly2hbb(obb2poly(obbs)), atol=1e-9)


def test_numpy_torch_agree_and_dtypes_are_preserved():
    rng = np.random.default_rng(8)
    obbs = random_obbs(rng, 600).reshape(2, 3, 100, 5)  # any leading dims
    polys = obb2poly(obbs)
    assert polys.shape == (2, 3, 100, 8) and polys.dtype == np.float64
    for version in VERSIONS:
        np.testing.assert_allclose(poly2obb(torch.from_numpy(polys), version).numpy(), poly2obb(polys, version))
        np.testing.assert_allclose(regularize_obb(torch.from_numpy(obbs), version).numpy(),
                                   regularize_obb(obbs, version))
        np.testing.assert_allclose(poly2obb_min_area(torch.from_numpy(polys), version).numpy(),
                                   poly2obb_min_area(polys, version))
    np.testing.assert_allclose(obb2poly(torch.from_numpy(obbs)).numpy(), polys)
    np.testing.assert_allclose(get_best_begin_point(torch.from_numpy(polys)).numpy(), get_best_begin_point(polys))
    # float32 in -> float32 out, both kinds; the float32 result agrees with float64 to float32 precision.
    p32 = polys.astype(np.float32)
    assert poly2obb(p32).dtype == np.float32 and obb2poly(obbs.astype(np.float32)).dtype == np.float32
    t32 = poly2obb(torch.from_numpy(p32), "le90")
    assert t32.dtype == torch.float32
    assert_in_range(t32.numpy(), "le90", tol=1e-6)
    assert_same_point_sets(obb2poly(t32.double()).numpy(), polys.reshape(-1, 8), tol=1e-2)
    assert obb2poly(torch.zeros(0, 5, dtype=torch.float16)).dtype == torch.float16
    # Integers are promoted to float64; empty input keeps its leading shape.
    assert poly2obb(np.zeros((0, 8), dtype=np.int64)).shape == (0, 5)
    assert poly2obb(np.array([[0, 0, 4, 0, 4, 2, 0, 2]])).dtype == np.float64


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match=r"poly2obb: polys must have shape \(\.\.\., 8\)"):
        poly2obb(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="angle version"):
        poly2obb(np.zeros((3, 8)), "le45")
    with pytest.raises(ValueError, match="obb2poly"):
        obb2poly(np.zeros((2, 8)))
    with pytest.raises(ValueError, match="2K"):
        poly2obb_min_area(np.zeros((2, 7)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(9)
    obbs = torch.from_numpy(random_obbs(rng, 1000))
    polys = obb2poly(obbs)
    for version in VERSIONS:
        gpu = poly2obb(polys.cuda().float(), version)
        assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
        assert_same_point_sets(obb2poly(gpu.double()).cpu().numpy(), polys.numpy(), tol=1e-2)
        np.testing.assert_allclose(poly2obb_min_area(polys.cuda(), version).cpu().numpy(),
                                   poly2obb_min_area(polys, version).numpy(), atol=1e-8)
