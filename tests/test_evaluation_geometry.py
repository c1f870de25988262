"""The building blocks of the evaluation against the scalar devkit transcriptions:
polygon IoU bit for bit, decision-exact fast IoU, the devkit's tie order, polygon NMS, argmax ties."""
from __future__ import annotations

import numpy as np
import pytest
from test_evaluation_reference import random_rect_pairs, ref_argsort, ref_iou_polyiou, ref_py_cpu_nms_poly

from mutdet_core.evaluation.matching import best_overlaps
from mutdet_core.evaluation.nms import batched_poly_nms, poly_nms
from mutdet_core.evaluation.ordering import _heapsort, devkit_argsort, eval_order, grouped_order, nms_order
from mutdet_core.evaluation.pair_iou import pair_iou
from mutdet_core.evaluation.polyiou import iou_poly_pairs


def _axis_box(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _pair_sets():
    rng = np.random.default_rng(0)
    p1, q1 = random_rect_pairs(rng, 400, center_range=20000.0)  # far from the origin: large fan rounding
    grid = rng.integers(0, 8, (600, 8)).astype(float)  # integer quads: concave, bow-ties, degenerate, shared edges
    grid_q = rng.integers(0, 8, (600, 8)).astype(float)
    boxes = np.array([_axis_box(*sorted(rng.integers(0, 6, 2)), *sorted(rng.integers(0, 6, 2))) for _ in range(300)])
    boxes_q = np.array([_axis_box(*sorted(rng.integers(0, 6, 2)), *sorted(rng.integers(0, 6, 2))) for _ in range(300)])
    return {"rotated-far": (p1, q1), "integer-grid": (grid, grid_q), "axis-integer": (boxes, boxes_q)}


@pytest.fixture(scope="module")
def pair_sets():
    sets = _pair_sets()
    ref = {k: np.array([ref_iou_polyiou(a, b) for a, b in zip(p, q)]) for k, (p, q) in sets.items()}
    return sets, ref


def test_polyiou_port_is_bit_identical_to_devkit_transcription(pair_sets):
    sets, ref = pair_sets
    for name, (p, q) in sets.items():
        got = iou_poly_pairs(p, q)
        same = (got == ref[name]) | (np.isnan(got) & np.isnan(ref[name]))
        assert same.all(), f"{name}: {np.flatnonzero(~same)[:5]}"
    # the sets really contain the hard cases
    grid = ref["integer-grid"]
    assert np.isnan(grid).any() and (grid < 0).any() and (grid > 0.5).any()
    assert (ref["axis-integer"] == 0.5).any()


def test_bowtie_gets_the_devkit_signed_value():
    bowtie, square = [0, 0, 2, 2, 2, 0, 0, 2], [0, 0, 2, 0, 2, 2, 0, 2]
    np.testing.assert_array_equal(iou_poly_pairs([square, bowtie], [bowtie, bowtie]), [0.0, -1.0])


def test_fast_iou_decisions_equal_exact_decisions(pair_sets):
    sets, ref = pair_sets
    thresholds = (0.1, 0.3, 0.5, 0.55, 0.7, 0.75, 0.95)
    for name, (p, q) in sets.items():
        iou, tol, is_exact = pair_iou(p, q, thresholds)
        exact = ref[name]
        assert (np.abs(iou - exact)[~np.isnan(exact)] <= tol[~np.isnan(exact)] + 0.0).all()
        for t in thresholds:
            with np.errstate(invalid="ignore"):
                np.testing.assert_array_equal(iou > t, exact > t, err_msg=f"{name} > {t}")
                np.testing.assert_array_equal(iou >= t, exact >= t, err_msg=f"{name} >= {t}")
                np.testing.assert_array_equal(iou <= t, exact <= t, err_msg=f"{name} <= {t}")
    # IoU exactly 0.5 on integer boxes must have been recomputed by the port, not left to the fast path
    p, q = sets["axis-integer"]
    iou, _, is_exact = pair_iou(p, q, (0.5,))
    assert is_exact[ref["axis-integer"] == 0.5].all()


def test_argmax_tie_takes_the_first_ground_truth_like_numpy_argmax():
    # one detection straddling two ground truths symmetrically: equal IoU, devkit argmax -> the first
    gts = np.array([_axis_box(0, 0, 10, 10), _axis_box(10, 0, 20, 10)], dtype=float)
    det = np.array([_axis_box(5, 0, 15, 10)], dtype=float)
    for order in ([0, 1], [1, 0]):
        best = best_overlaps([0], det, [0, 0], gts[order], (0.3,))
        assert best.jmax[0] == 0 and best.ovmax[0] == pytest.approx(1 / 3)


def test_devkit_argsort_equals_reference_introsort():
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 3, 16, 17, 50, 400, 5000):
        for decimals in (0, 1, 2, 3):
            x = np.round(rng.random(n), decimals)
            np.testing.assert_array_equal(devkit_argsort(x), ref_argsort(x), err_msg=f"n={n} decimals={decimals}")
    x = np.tile([1.0, 0.0, 0.5], 2000)
    np.testing.assert_array_equal(devkit_argsort(x), ref_argsort(x))
    np.testing.assert_array_equal(eval_order(x), ref_argsort(-x))
    np.testing.assert_array_equal(nms_order(x), ref_argsort(x)[::-1])
    with pytest.raises(ValueError, match="NaN"):
        devkit_argsort([0.1, np.nan])


def test_introsort_differs_from_stable_sort_on_ties():
    # the point of the module: a stable sort would order these ties differently
    x = np.round(np.random.default_rng(0).random(200), 1)
    assert not np.array_equal(devkit_argsort(x), np.argsort(x, kind="stable"))


def test_heapsort_fallback_sorts():
    rng = np.random.default_rng(4)
    keys = rng.integers(0, 20, 300).tolist()
    perm = list(range(300))
    _heapsort(keys, perm, 0, 300)
    assert sorted(perm) == list(range(300))
    assert all(keys[perm[i]] <= keys[perm[i + 1]] for i in range(299))


def test_grouped_order_is_the_devkit_order_inside_each_group():
    rng = np.random.default_rng(5)
    groups = rng.integers(0, 6, 400)
    scores = np.round(rng.random(400), 1)
    for mode, ref in (("eval", lambda s: ref_argsort(-s)), ("nms", lambda s: ref_argsort(s)[::-1])):
        order = grouped_order(groups, scores, mode)
        assert (np.diff(groups[order]) >= 0).all()
        for g in range(6):
            members = np.flatnonzero(groups == g)
            np.testing.assert_array_equal(order[groups[order] == g], members[ref(scores[members])])


def test_poly_nms_equals_devkit_py_cpu_nms_poly():
    rng = np.random.default_rng(6)
    centres = rng.uniform(0, 300, (12, 2))
    p, _ = random_rect_pairs(rng, 150, center_range=1.0)
    polys = p + np.repeat(centres, [13] * 6 + [12] * 6, axis=0)[:, [0, 1] * 4]  # clusters of overlapping boxes
    scores = np.round(rng.uniform(0.05, 1.0, 150), 1)  # many ties
    for thr in (0.1, 0.3, 0.5):
        want = ref_py_cpu_nms_poly(np.column_stack([polys, scores]), thr)
        np.testing.assert_array_equal(poly_nms(polys, scores, thr), want)
        np.testing.assert_array_equal(poly_nms(polys, scores, thr, exact=True), want)
    assert len(ref_py_cpu_nms_poly(np.column_stack([polys, scores]), 0.1)) < 150  # something was suppressed


def test_batched_nms_runs_each_group_independently():
    box = np.array([_axis_box(0, 0, 10, 10)] * 3, dtype=float)
    keep = batched_poly_nms(box, [0.9, 0.8, 0.7], [1, 0, 1], 0.5)
    np.testing.assert_array_equal(keep, [1, 0])  # group 0 first, then group 1's best
    with pytest.raises(ValueError, match="outside"):
        batched_poly_nms(box, [0.9, 0.8, 0.7], [0, 0, 0], 1.0)
