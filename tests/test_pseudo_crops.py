"""Rotated crops (pseudo_labels/crops.py) against mmcv's RoIAlignRotated: mmcv's own test cases (hard-coded
from open-mmlab/mmcv tests/test_ops/test_roi_align_rotated.py, commit a8073c74), a numpy port of mmcv's kernel
on random boxes that cross the image edge, and the switch back to the earlier single-sample, zero-padded
crops."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from mutdet_core.config import SCHEMA_PATH
from mutdet_core.pseudo_labels.crops import EDGE_RULES, rotated_crops
from mutdet_core.pseudo_labels.params import EmbeddingParams

# mmcv's cases: input (1, C, H, W), rois (batch, cx, cy, w, h, theta); RoIAlignRotated((2, 2), spatial_scale 1,
# sampling_ratio 2, aligned=True, clockwise=False); expected output and input gradient of output.sum().
MMCV_INPUTS = [([[[[1., 2.], [3., 4.]]]], [[0., 0.5, 0.5, 1., 1., 0]]),
               ([[[[1., 2.], [3., 4.]]]], [[0., 0.5, 0.5, 1., 1., np.pi / 2]]),
               ([[[[1., 2.], [3., 4.]], [[4., 3.], [2., 1.]]]], [[0., 0.5, 0.5, 1., 1., 0]]),
               ([[[[1., 2., 5., 6.], [3., 4., 7., 8.], [9., 10., 13., 14.], [11., 12., 15., 16.]]]],
                [[0., 1.5, 1.5, 3., 3., 0]]),
               ([[[[1., 2., 5., 6.], [3., 4., 7., 8.], [9., 10., 13., 14.], [11., 12., 15., 16.]]]],
                [[0., 1.5, 1.5, 3., 3., np.pi / 2]])]
_GRAD_4 = [[0.47265625, 0.42968750, 0.42968750, 0.04296875], [0.42968750, 0.39062500, 0.39062500, 0.03906250],
           [0.42968750, 0.39062500, 0.39062500, 0.03906250], [0.04296875, 0.03906250, 0.03906250, 0.00390625]]
MMCV_OUTPUTS = [([[[[1.0, 1.25], [1.5, 1.75]]]], [[[[3.0625, 0.4375], [0.4375, 0.0625]]]]),
                ([[[[1.5, 1], [1.75, 1.25]]]], [[[[3.0625, 0.4375], [0.4375, 0.0625]]]]),
                ([[[[1.0, 1.25], [1.5, 1.75]], [[4.0, 3.75], [3.5, 3.25]]]],
                 [[[[3.0625, 0.4375], [0.4375, 0.0625]], [[3.0625, 0.4375], [0.4375, 0.0625]]]]),
                ([[[[1.9375, 4.75], [7.5625, 10.375]]]], [[_GRAD_4]]),
                ([[[[7.5625, 1.9375], [10.375, 4.75]]]], [[_GRAD_4]])]


def mmcv_roi_align_rotated(image: np.ndarray, rboxes: np.ndarray, size: int, sampling_ratio: int,
                           edge_rule: str = "mmcv", clockwise: bool = True) -> np.ndarray:
    """numpy port of mmcv's roi_align_rotated forward kernel (aligned=True, spatial_scale 1), written from
    the kernel's formulas in pixel-index coordinates, not from crops.py's affine grids. ``edge_rule="mmcv"``
    is its bilinear_interpolate; ``"zero"`` plain bilinear with zeros outside. ``(C, H, W)``, ``(N, 5)`` ->
    ``(N, C, size, size)`` float64."""
    image = np.asarray(image, np.float64)
    channels, height, width = image.shape
    r = sampling_ratio
    out = []
    for cx, cy, w, h, theta in np.asarray(rboxes, np.float64):
        cx, cy = cx - 0.5, cy - 0.5  # aligned=True
        theta = -theta if clockwise else theta
        bins = np.arange(size)[:, None] + (np.arange(r)[None, :] + 0.5) / r  # (size, r), in bins
        yy = (-h / 2 + bins * h / size)[:, :, None, None]  # (PH, r, 1, 1)
        xx = (-w / 2 + bins * w / size)[None, None, :, :]  # (1, 1, PW, r)
        y = yy * np.cos(theta) - xx * np.sin(theta) + cy
        x = yy * np.sin(theta) + xx * np.cos(theta) + cx
        values = _bilinear_mmcv(image, y, x) if edge_rule == "mmcv" else _bilinear_zero(image, y, x)
        out.append(values.mean(axis=(2, 4)))  # (C, PH, r, PW, r) -> (C, PH, PW)
    return np.stack(out)


def _bilinear_mmcv(image, y, x):
    """mmcv common_cuda_helper.hpp bilinear_interpolate, vectorised."""
    height, width = image.shape[1:]
    zero = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
    y, x = np.maximum(y, 0.0), np.maximum(x, 0.0)
    y_low, x_low = y.astype(np.int64), x.astype(np.int64)
    y_top, x_top = y_low >= height - 1, x_low >= width - 1
    y_low, x_low = np.where(y_top, height - 1, y_low), np.where(x_top, width - 1, x_low)
    y, x = np.where(y_top, y_low, y), np.where(x_top, x_low, x)
    y_high, x_high = np.where(y_top, y_low, y_low + 1), np.where(x_top, x_low, x_low + 1)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    val = (hy * hx * image[:, y_low, x_low] + hy * lx * image[:, y_low, x_high]
           + ly * hx * image[:, y_high, x_low] + ly * lx * image[:, y_high, x_high])
    return np.where(zero, 0.0, val)


def _bilinear_zero(image, y, x):
    height, width = image.shape[1:]
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    val = 0.0
    for dy in (0, 1):
        for dx in (0, 1):
            yi, xi = y0 + dy, x0 + dx
            weight = (1 - np.abs(y - yi)) * (1 - np.abs(x - xi))
            ok = (yi >= 0) & (yi < height) & (xi >= 0) & (xi < width)
            val = val + np.where(ok, weight * image[:, yi.clip(0, height - 1), xi.clip(0, width - 1)], 0.0)
    return val


@pytest.mark.parametrize("case", range(len(MMCV_INPUTS)))
def test_mmcv_test_cases(case):
    """mmcv's five cases, output and input gradient to mmcv's values. mmcv runs them with clockwise=False;
    crops.py is clockwise=True (the release's setting), which is the same op with theta negated."""
    image = torch.tensor(MMCV_INPUTS[case][0], dtype=torch.float64)[0].requires_grad_(True)
    roi = torch.tensor(MMCV_INPUTS[case][1], dtype=torch.float64)[:, 1:]
    roi[:, 4] = -roi[:, 4]
    crops = rotated_crops(image, roi, size=2, enlarge=1.0, sampling_ratio=2, edge_rule="mmcv")
    crops.sum().backward()
    expected, expected_grad = (np.array(a) for a in MMCV_OUTPUTS[case])
    assert np.abs(crops.detach().numpy() - expected).max() < 1e-6
    assert np.abs(image.grad.numpy() - expected_grad[0]).max() < 1e-6
    # the port of mmcv's kernel agrees (in its own clockwise=False convention)
    port = mmcv_roi_align_rotated(np.array(MMCV_INPUTS[case][0])[0], np.array(MMCV_INPUTS[case][1])[:, 1:], 2, 2,
                                  clockwise=False)
    assert np.abs(port - expected).max() < 1e-12
    # the earlier crops (one sample per bin, zeros outside) miss every one of these cases by >= 0.17
    old = rotated_crops(image.detach(), roi, size=2, enlarge=1.0, sampling_ratio=1, edge_rule="zero")
    assert np.abs(old.numpy() - expected).max() > 0.15


def _edge_boxes(rng, n, height, width):
    """Random le90 boxes, about half of them crossing an image edge, some larger than the image."""
    cx = rng.uniform(-4, width + 4, n)
    cy = rng.uniform(-4, height + 4, n)
    w, h = rng.uniform(1, 1.5 * width, n), rng.uniform(1, height, n)
    theta = rng.uniform(-np.pi / 2, np.pi / 2, n)
    return np.stack([cx, cy, w, h, theta], axis=1)


@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
@pytest.mark.parametrize("edge_rule", EDGE_RULES)
def test_random_boxes_match_the_kernel_port(sampling_ratio, edge_rule):
    """40 random boxes on a random 3 x 37 x 53 image, enlarged 1.5x, 9 x 9 crops, every sampling ratio and
    edge rule, against the kernel port. float32 sample positions via normalised coordinates differ by
    ~1e-6 px from the port's float64 ones; a wrong edge band, sample offset or average gives >~ 0.05."""
    rng = np.random.default_rng(sampling_ratio)
    image = rng.random((3, 37, 53)).astype(np.float32)
    rboxes = _edge_boxes(rng, 40, 37, 53)
    crops = rotated_crops(torch.from_numpy(image), torch.as_tensor(rboxes, dtype=torch.float32), 9, 1.5,
                          sampling_ratio, edge_rule).numpy()
    enlarged = rboxes * [1, 1, 1.5, 1.5, 1]
    expected = mmcv_roi_align_rotated(image, enlarged, 9, sampling_ratio, edge_rule)
    assert crops.shape == expected.shape == (40, 3, 9, 9)
    assert np.abs(crops - expected).max() < 1e-4
    assert (expected == 0).any() and (expected != 0).mean() > 0.5  # some samples fall outside, most inside


def test_box_crossing_the_tile_edge():
    """A constant image: with mmcv's rule every sample up to one pixel beyond the outermost pixel centres
    takes the edge value (a box 0.4 px past every edge stays 1 everywhere), samples beyond that are 0;
    zero padding darkens the outer crop pixels instead."""
    image = torch.ones(1, 10, 10)
    past = torch.tensor([[5.0, 5.0, 10.8, 10.8, 0.0]])  # covers [-0.4, 10.4]^2: samples within the band
    mmcv = rotated_crops(image, past, 16, 1.0, 2, "mmcv")[0, 0]
    zero = rotated_crops(image, past, 16, 1.0, 2, "zero")[0, 0]
    assert torch.allclose(mmcv, torch.ones(16, 16))
    assert zero[0].max() < 0.95 and zero[:, -1].max() < 0.95 and abs(zero[8, 8] - 1) < 1e-6
    far = torch.tensor([[5.25, 5.25, 20.0, 20.0, 0.0]])  # covers [-4.75, 15.25]^2: the outer samples are zero
    crop = rotated_crops(image, far, 20, 1.0, 1, "mmcv")[0, 0]
    # sample index coordinates -4.75 + j + 0.5 - 0.5 = j - 4.75: below -1 for j < 4, above W = 10 for j > 14
    expected = torch.zeros(20)
    expected[4:15] = 1
    assert torch.equal(crop[10], expected) and torch.equal(crop[:, 10], expected)
    # rotated by 45 degrees across a corner: matches the port (the band follows the sample, not the box)
    rng = np.random.default_rng(5)
    textured = rng.random((2, 10, 10)).astype(np.float32)
    corner = np.array([[0.3, 9.6, 4.0, 3.0, np.pi / 4]])
    got = rotated_crops(torch.from_numpy(textured), torch.as_tensor(corner, dtype=torch.float32), 12, 1.5).numpy()
    assert np.abs(got - mmcv_roi_align_rotated(textured, corner * [1, 1, 1.5, 1.5, 1], 12, 2)).max() < 1e-4


def test_sampling_ratio_is_the_average_of_shifted_single_samples():
    """r = 2 on a large box is the mean of four single-sample crops shifted by a quarter bin: the r x r
    samples are placed as mmcv places them, and averaged with equal weights."""
    rng = np.random.default_rng(2)
    image = torch.from_numpy(rng.random((3, 64, 64)).astype(np.float32))
    box = np.array([31.0, 30.0, 40.0, 24.0, 0.3])
    size = 8
    r2 = rotated_crops(image, torch.tensor(box[None], dtype=torch.float32), size, 1.0, 2, "zero")[0]
    shifted = []
    for sy in (-0.25, 0.25):
        for sx in (-0.25, 0.25):
            # a shift of (sx, sy) bins along the box axes moves the centre by R(theta) (sx w/S, sy h/S)
            c, s = np.cos(box[4]), np.sin(box[4])
            dx, dy = sx * box[2] / size, sy * box[3] / size
            moved = box.copy()
            moved[:2] += [c * dx - s * dy, s * dx + c * dy]
            moved_box = torch.tensor(moved[None], dtype=torch.float32)
            shifted.append(rotated_crops(image, moved_box, size, 1.0, 1, "zero")[0])
    assert torch.allclose(r2, torch.stack(shifted).mean(0), atol=1e-5)
    assert (r2 - shifted[0]).abs().max() > 0.05  # the shifts matter


def test_batched_and_empty():
    rng = np.random.default_rng(3)
    image = torch.from_numpy(rng.random((3, 40, 40)).astype(np.float32))
    boxes = torch.as_tensor(_edge_boxes(rng, 5, 40, 40), dtype=torch.float32)
    batch = rotated_crops(image, boxes, 32)
    for k in range(5):
        assert torch.allclose(batch[k], rotated_crops(image, boxes[k:k + 1], 32)[0], atol=1e-6)
    assert rotated_crops(image, boxes[:0], 32).shape == (0, 3, 32, 32)


def test_bad_settings_are_refused():
    image = torch.zeros(3, 8, 8)
    box = torch.tensor([[4.0, 4.0, 2.0, 2.0, 0.0]])
    with pytest.raises(ValueError, match="sampling_ratio must be an integer >= 1, got 0"):
        rotated_crops(image, box, 4, sampling_ratio=0)
    with pytest.raises(ValueError, match="edge_rule must be one of"):
        rotated_crops(image, box, 4, edge_rule="border")
    with pytest.raises(ValueError, match="embeddings: sampling_ratio must be an integer >= 1, got 1.5"):
        EmbeddingParams(sampling_ratio=1.5)
    with pytest.raises(ValueError, match=r"embeddings: edge_rule must be one of \['mmcv', 'zero'\], got 'zeros'"):
        EmbeddingParams(edge_rule="zeros")


def test_defaults_are_the_release_and_the_schema_says_so():
    """The dataclass, the crop function and the schema agree: sampling_ratio 2, edge_rule mmcv; the two
    settings are part of the embeddings fingerprint (so a switch recomputes the store)."""
    params = EmbeddingParams()
    assert (params.sampling_ratio, params.edge_rule) == (2, "mmcv")
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    block = schema["properties"]["pseudo_labels"]["properties"]["embeddings"]
    assert block["properties"]["sampling_ratio"]["default"] == 2
    assert block["properties"]["edge_rule"]["default"] == "mmcv"
    assert block["properties"]["edge_rule"]["enum"] == list(EDGE_RULES)
    described = EmbeddingParams(sampling_ratio=1, edge_rule="zero").describe()
    assert (described["sampling_ratio"], described["edge_rule"]) == (1, "zero")
    assert described != params.describe()
