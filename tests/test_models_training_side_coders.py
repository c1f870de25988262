"""Angle coders, box ops and the differentiable rotated IoU (mutdet_core.models training side)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely import affinity
from shapely.geometry import Polygon

from mutdet_core.models.angle_coder import CSLCoder, RegressionAngleCoder, arcsl_window, build_angle_coder
from mutdet_core.models.box_ops import (aspect_ratio_weight, aspect_ratios, box_cxcywh_to_xyxy, box_xyxy_to_cxcywh,
                                        elementwise_generalized_box_iou, generalized_box_iou, inverse_sigmoid,
                                        wrap_angle_le90)
from mutdet_core.models.rotated_iou_loss import (pairwise_rotated_box_iou, rotated_box_iou,
                                                 rotated_iou_loss)
from test_models_training_side_helpers import real_targets, shapely_iou

OFFSETS = np.arange(-90, 90)


def shapely_self_rotation_iou(k: float) -> np.ndarray:
    """IoU of a 2 x 2k rectangle with its copy rotated by d degrees, d = -90..89."""
    rect = Polygon([(-1, -k), (1, -k), (1, k), (-1, k)])
    out = []
    for d in OFFSETS:
        rotated = affinity.rotate(rect, float(d), origin=(0, 0))
        out.append(rect.intersection(rotated).area / rect.union(rotated).area)
    return np.array(out)


def circular_deg_error(a: torch.Tensor, b: torch.Tensor, period: float = 180.0) -> torch.Tensor:
    diff = torch.remainder(torch.rad2deg(a.double() - b.double()) + period / 2, period) - period / 2
    return diff.abs()


# ---------------------------------------------------------------- AR-CSL / CSL
@pytest.mark.parametrize("k", [1.0, 1.5, 2.0, 3.7, 8.0, 25.0])
def test_arcsl_labels_equal_normalised_iou_curve(k):
    iou = shapely_self_rotation_iou(k)
    expected = (iou - iou.min()) / (1 - iou.min())
    coder = build_angle_coder("arcsl")
    # GT angles at a few bins, including both ends of le90, so the window wraps around the circle.
    degrees = torch.tensor([-90.0, -37.2, 0.0, 12.6, 89.4], dtype=torch.float64)
    labels = coder.encode(torch.deg2rad(degrees), torch.full((5,), k, dtype=torch.float64))
    assert labels.shape == (5, 180)
    for row, deg in zip(labels, degrees):
        idx = int(math.floor(deg.item() + 90)) % 180
        got = row[(idx + OFFSETS) % 180].numpy()
        np.testing.assert_allclose(got, expected, atol=2e-6)


def test_arcsl_reference_table_values():
    # ARS-DETR reference A.2 table (normalize=True), offsets in degrees.
    table = {
        1: [.942, .834, .737, .533, .250, .085, 0.0, 1.0],
        2: [.968, .909, .855, .738, .563, .435, .276, 0.0],
        4: [.958, .880, .809, .655, .415, .222, .084, 0.0],
        8: [.927, .796, .682, .450, .168, .082, .032, 0.0],
    }
    degrees = [1, 3, 5, 10, 20, 30, 45, 90]
    window = arcsl_window(torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=torch.float64), normalize=True)
    for row, (k, values) in zip(window, table.items()):
        got = [row[90 - d].item() for d in degrees]  # column j is offset j - 90; |d| is symmetric
        np.testing.assert_allclose(got, values, atol=6e-4, err_msg=f"k={k}")
        np.testing.assert_allclose(row[90 + np.array(degrees[:-1])].numpy(), values[:-1], atol=6e-4)


def test_arcsl_unnormalised_ends():
    k = torch.tensor([1.5, 2.0, 5.0], dtype=torch.float64)
    window = arcsl_window(k, normalize=False)
    np.testing.assert_allclose(window[:, 90].numpy(), 1.0)  # d = 0
    np.testing.assert_allclose(window[:, 0].numpy(), (1 / (2 * k - 1)).numpy(), rtol=1e-9)  # d = -90


def test_csl_gaussian_window_is_circular_and_covers_the_circle():
    coder = build_angle_coder("csl")
    assert coder.num_bins == 180 and coder.sigma == 6.0
    labels = coder.encode(torch.deg2rad(torch.tensor([-89.5, 0.2], dtype=torch.float64)))
    # -89.5 deg is bin 0: the window continues at bin 179, 178, ...
    np.testing.assert_allclose(labels[0, [0, 1, 179, 170]].numpy(),
                               np.exp(-np.array([0, 1, 1, 10]) ** 2 / 72.0), rtol=1e-12)
    # bin 90 (0.2 deg): far tail 60 bins away still non-zero (not truncated at +-radius)
    assert labels[1, 90] == 1.0 and labels[1, 30] == pytest.approx(math.exp(-3600 / 72), rel=1e-9)
    assert (labels > 0).all()


@pytest.mark.parametrize("kind", ["csl", "arcsl"])
def test_csl_round_trip_within_half_a_degree(kind):
    coder = build_angle_coder(kind)
    angles = torch.linspace(-math.pi / 2, math.pi / 2, 1441, dtype=torch.float64)[:-1]
    ratios = torch.linspace(1.05, 12.0, angles.numel(), dtype=torch.float64)
    decoded = coder.decode(coder.encode(angles, ratios))
    assert decoded.shape == angles.shape
    assert circular_deg_error(decoded, angles).max() <= 0.5 + 1e-9
    assert decoded.min() >= math.radians(-89.5) - 1e-12 and decoded.max() <= math.radians(89.5) + 1e-12


def test_csl_round_trip_on_real_dota_objects(shared_data):
    t = real_targets(shared_data / "dota_dense" / "labelTxt" / "P1478__1__853___962.txt", size=1024)
    ratios = aspect_ratios(t["boxes"])
    for kind in ("csl", "arcsl"):
        coder = build_angle_coder(kind)
        decoded = coder.decode(coder.encode(t["angles"], ratios))
        err = circular_deg_error(decoded, t["angles"])
        # A square's AR-CSL label is 90-degree periodic: both peaks are the same box.
        square = ratios < 1.0 + 1e-6
        err = torch.where(square, torch.minimum(err, circular_deg_error(decoded, t["angles"], 90.0)), err)
        assert err.max() <= 0.5 + 1e-4, kind


def test_regression_coder_round_trip_and_range():
    coder = RegressionAngleCoder()
    assert coder.num_bins == 1
    angles = torch.linspace(-math.pi / 2 + 1e-3, math.pi / 2 - 1e-3, 500, dtype=torch.float64)
    logits = coder.encode(angles)
    assert logits.shape == (500, 1)
    assert torch.allclose(coder.decode(logits), angles, atol=1e-9)
    assert coder.decode(torch.zeros(2, 3, 1)).abs().max() == 0  # logit 0 -> angle 0 (A.7)
    # (sigmoid - 0.5) * pi stays inside (-pi/2, pi/2) until sigmoid saturates
    extreme = coder.decode(torch.tensor([[-20.0], [20.0]], dtype=torch.float64))
    assert -math.pi / 2 < extreme[0] < extreme[1] < math.pi / 2


def test_build_angle_coder_rejects_unknown():
    with pytest.raises(ValueError, match="unknown angle coder"):
        build_angle_coder("kld")
    with pytest.raises(ValueError, match="aspect ratios"):
        CSLCoder(window="aspect_ratio").encode(torch.zeros(2))


# ---------------------------------------------------------------- box ops
def test_box_conversions_and_giou():
    torch.manual_seed(0)
    cxcywh = torch.rand(50, 4) * 0.5 + 0.1
    assert torch.allclose(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(cxcywh)), cxcywh, atol=1e-6)
    a, b = box_cxcywh_to_xyxy(cxcywh[:20]), box_cxcywh_to_xyxy(cxcywh[20:40])
    pairwise = generalized_box_iou(a, b)
    assert torch.allclose(pairwise.diagonal(), elementwise_generalized_box_iou(a, b), atol=1e-6)
    assert torch.allclose(generalized_box_iou(a, a).diagonal(), torch.ones(20), atol=1e-6)
    # Disjoint boxes: GIoU = -(hull - union) / hull
    far = generalized_box_iou(torch.tensor([[0.0, 0.0, 0.1, 0.1]]), torch.tensor([[0.9, 0.9, 1.0, 1.0]]))
    assert far.item() == pytest.approx(0.02 / 1.0 - 1.0, abs=1e-6)


def test_inverse_sigmoid_aspect_ratio_weight_and_wrap():
    x = torch.linspace(-6, 6, 25)
    assert torch.allclose(inverse_sigmoid(x.sigmoid()), x, atol=1e-4)
    assert inverse_sigmoid(torch.tensor([0.0, 1.0]), eps=1e-3).abs().max() == pytest.approx(math.log(1e3), rel=1e-5)
    ratio = aspect_ratios(torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.1, 0.3], [0.5, 0.5, 0.0, 0.1]]))
    assert ratio[:2].tolist() == pytest.approx([1.0, 3.0]) and torch.isfinite(ratio).all()
    assert aspect_ratio_weight(ratio[:2]).tolist() == pytest.approx([1.0, 1.5])
    wrapped = wrap_angle_le90(torch.tensor([math.pi / 2, -math.pi / 2, 2.0, -2.0], dtype=torch.float64))
    assert wrapped.tolist() == pytest.approx([-math.pi / 2, -math.pi / 2, 2.0 - math.pi, math.pi - 2.0])


# ---------------------------------------------------------------- rotated IoU
def random_rboxes(n: int, seed: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b1 = torch.cat([torch.rand(n, 2, generator=g), torch.rand(n, 2, generator=g) * 0.4 + 0.01,
                    (torch.rand(n, 1, generator=g) - 0.5) * math.pi], 1)
    b2 = torch.cat([b1[:, :2] + torch.randn(n, 2, generator=g) * 0.08, torch.rand(n, 2, generator=g) * 0.4 + 0.01,
                    (torch.rand(n, 1, generator=g) - 0.5) * math.pi], 1)
    return b1.to(dtype), b2.to(dtype)


DEGENERATE_PAIRS = [
    ([0.5, 0.5, 0.3, 0.1, 0.4], [0.5, 0.5, 0.3, 0.1, 0.4]),  # identical
    ([0.5, 0.5, 0.2, 0.1, 0.3], [0.5, 0.5, 0.1, 0.2, 0.3 + math.pi / 2]),  # same box, other description
    ([0.5, 0.5, 0.2, 0.1, 0.0], [0.6, 0.5, 0.2, 0.1, 0.0]),  # shared horizontal edges, half overlap
    ([0.5, 0.5, 0.2, 0.1, 0.0], [0.75, 0.5, 0.2, 0.1, 0.0]),  # disjoint, parallel
    ([0.5, 0.5, 0.2, 0.1, 0.2], [0.5, 0.5, 0.1, 0.05, 0.2]),  # contained, concentric
    ([0.5, 0.5, 0.4, 0.3, 0.0], [0.55, 0.45, 0.1, 0.05, 0.7]),  # contained, rotated
    ([0.5, 0.5, 0.2, 0.1, 0.0], [0.5, 0.5, 0.0, 0.05, 0.0]),  # zero-width box
    ([0.5, 0.5, 0.2, 0.1, 0.0], [0.6, 0.55, 0.2, 0.1, math.pi / 2]),  # corner on edge
    ([0.3, 0.3, 0.2, 0.2, 0.0], [0.3, 0.3, 0.2, 0.2, math.pi / 4]),  # square vs rotated square (octagon)
]


def test_rotated_iou_matches_shapely_random_and_degenerate():
    b1, b2 = random_rboxes(400, seed=1)
    deg1 = torch.tensor([p[0] for p in DEGENERATE_PAIRS], dtype=torch.float64)
    deg2 = torch.tensor([p[1] for p in DEGENERATE_PAIRS], dtype=torch.float64)
    b1, b2 = torch.cat([b1, deg1]), torch.cat([b2, deg2])
    ours = rotated_box_iou(b1, b2)
    ref = torch.tensor([shapely_iou(x, y) for x, y in zip(b1, b2)], dtype=torch.float64)
    assert (ref > 0).float().mean() > 0.5  # the random pairs mostly overlap
    assert (ours - ref).abs().max() < 1e-5
    # symmetric in its arguments
    assert (rotated_box_iou(b2, b1) - ours).abs().max() < 1e-9


def test_rotated_iou_float32_and_pairwise():
    b1, b2 = random_rboxes(30, seed=2)
    ref = torch.tensor([[shapely_iou(x, y) for y in b2] for x in b1])
    pairwise = pairwise_rotated_box_iou(b1.float(), b2.float(), chunk_size=7)
    assert pairwise.shape == (30, 30)
    assert (pairwise.double() - ref).abs().max() < 1e-5
    assert pairwise_rotated_box_iou(b1[:0], b2).shape == (0, 30)


def test_rotated_iou_on_real_dota_objects(shared_data):
    t = real_targets(shared_data / "dota_dense" / "labelTxt" / "P0004.txt")
    rboxes = torch.cat([t["boxes"].double(), t["angles"].double()[:, None]], 1)
    shifted = rboxes.clone()
    shifted[:, :2] += shifted[:, 3:4] * 0.2  # partial overlaps with the original (h is the short side)
    shifted[:, 4] += 0.2
    ours = rotated_box_iou(rboxes, shifted)
    ref = torch.tensor([shapely_iou(x, y) for x, y in zip(rboxes, shifted)], dtype=torch.float64)
    assert ours.numel() > 50 and (ref > 0.2).all() and (ref < 0.99).all()
    assert (ours - ref).abs().max() < 1e-5


def test_rotated_iou_loss_gradcheck_float64():
    b1, b2 = random_rboxes(12, seed=3)
    b2[:, :2] = b1[:, :2] + 0.02  # overlapping, generic (no ties or touching)
    b1.requires_grad_(True)
    b2.requires_grad_(True)
    assert (rotated_box_iou(b1, b2) > 0.01).all()
    assert torch.autograd.gradcheck(rotated_iou_loss, (b1, b2), eps=1e-7, atol=1e-6)


@pytest.mark.parametrize("pair", DEGENERATE_PAIRS)
def test_rotated_iou_loss_gradients_finite_at_degenerate_cases(pair):
    b1 = torch.tensor(pair[0], requires_grad=True)
    b2 = torch.tensor(pair[1], requires_grad=True)
    loss = rotated_iou_loss(b1, b2)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(b1.grad).all() and torch.isfinite(b2.grad).all()


def test_rotated_iou_loss_value():
    box = torch.tensor([[0.5, 0.5, 0.2, 0.1, 0.3]])
    half = torch.tensor([[0.5, 0.5, 0.1, 0.1, 0.3]])
    assert rotated_iou_loss(box, box).item() == pytest.approx(0.0, abs=1e-5)
    assert rotated_iou_loss(box, half).item() == pytest.approx(math.log(2), abs=1e-5)
    far = torch.tensor([[0.9, 0.9, 0.05, 0.05, 0.0]])
    assert rotated_iou_loss(box, far).item() == pytest.approx(-math.log(1e-6), rel=1e-6)
