"""Multi-scale deformable attention (plain and rotated): sampling kernel, rotation, gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mutdet_core.geometry import obb2poly
from mutdet_core.models.deformable_attention import MultiScaleDeformableAttention, ms_deform_attn_core_pytorch
from mutdet_core.models.rotated_deformable_attention import (RotatedMultiScaleDeformableAttention,
                                                             wrap_reference_angle)

torch.set_num_threads(1)
SHAPES = torch.tensor([[6, 5], [3, 3], [2, 1]])  # (H, W) per level, deliberately non-square


def naive_bilinear(feature: np.ndarray, x: float, y: float) -> np.ndarray:
    """Sample (C, H, W) at normalised (x, y): pixel centres at (i + 0.5) / W, zeros outside."""
    _, h, w = feature.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = np.zeros(feature.shape[0])
    for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
        for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
            if 0 <= xi < w and 0 <= yi < h:
                out += wx * wy * feature[:, yi, xi]
    return out


def test_core_matches_naive_bilinear_sum():
    g = torch.Generator().manual_seed(0)
    batch, n_heads, head_dim, queries, points = 2, 2, 3, 4, 2
    n_levels = len(SHAPES)
    total = int(SHAPES.prod(1).sum())
    value = torch.randn(batch, total, n_heads, head_dim, generator=g, dtype=torch.float64)
    # Locations spill outside [0, 1] on purpose: zero padding must apply.
    loc = torch.rand(batch, queries, n_heads, n_levels, points, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(batch, queries, n_heads, n_levels, points, generator=g, dtype=torch.float64)
    out = ms_deform_attn_core_pytorch(value, SHAPES, loc, weights).numpy()

    starts = np.concatenate([[0], np.cumsum(SHAPES.prod(1).numpy())[:-1]])
    for b in range(batch):
        for q in range(queries):
            for head in range(n_heads):
                expected = np.zeros(head_dim)
                for lvl, (h, w) in enumerate(SHAPES.tolist()):
                    v = value[b, starts[lvl]:starts[lvl] + h * w, head].numpy().T.reshape(head_dim, h, w)
                    for p in range(points):
                        x, y = loc[b, q, head, lvl, p].tolist()
                        expected += weights[b, q, head, lvl, p].item() * naive_bilinear(v, x, y)
                np.testing.assert_allclose(out[b, q, head * head_dim:(head + 1) * head_dim], expected, atol=1e-12)


def _inputs(batch=2, queries=5, d_model=16, box=True, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    total = int(SHAPES.prod(1).sum())
    query = torch.randn(batch, queries, d_model, generator=g, dtype=dtype)
    value = torch.randn(batch, total, d_model, generator=g, dtype=dtype)
    dims = 4 if box else 2
    ref = torch.rand(batch, queries, 1, dims, generator=g, dtype=dtype) * 0.6 + 0.2
    mask = torch.zeros(batch, total, dtype=torch.bool)
    mask[-1, -2:] = True
    return query, ref, value, mask


def _randomise(module, seed=1):
    """Non-zero offset / attention weights so that the query actually moves the sampling points."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return module


@pytest.mark.parametrize("box", [True, False])
def test_rotated_attention_at_angle_zero_equals_plain(box):
    torch.manual_seed(0)
    plain = _randomise(MultiScaleDeformableAttention(16, 2, len(SHAPES), 3))
    rotated = RotatedMultiScaleDeformableAttention(16, 2, len(SHAPES), 3)
    rotated.load_state_dict(plain.state_dict())
    query, ref, value, mask = _inputs(box=box)
    zeros = torch.zeros(query.shape[:2])
    expected = plain(query, ref, value, SHAPES, mask)
    torch.testing.assert_close(rotated(query, ref, value, SHAPES, mask, reference_angles=zeros), expected,
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(rotated(query, ref, value, SHAPES, mask, reference_angles=zeros, aspect_ratio=1.7),
                               expected, rtol=0, atol=1e-6)
    # And a non-zero angle really changes the result.
    turned = rotated(query, ref, value, SHAPES, mask, reference_angles=zeros + 0.5)
    assert (turned - expected).abs().max() > 1e-3


def test_rotation_matches_released_formula_on_square_inputs():
    """A.4: loc = ref_xy + (offset / P * wh / 2) @ [[cos, sin], [-sin, cos]] (row vector)."""
    attn = RotatedMultiScaleDeformableAttention(16, 2, len(SHAPES), 3)
    g = torch.Generator().manual_seed(3)
    ref = torch.rand(2, 5, 1, 4, generator=g)
    offsets = torch.randn(2, 5, 2, len(SHAPES), 3, 2, generator=g)
    theta = torch.rand(2, 5, generator=g) * 2 - 1
    loc = attn.sampling_locations(ref, offsets, SHAPES, reference_angles=theta, aspect_ratio=1.0)
    rot = torch.stack([torch.stack([theta.cos(), theta.sin()], -1), torch.stack([-theta.sin(), theta.cos()], -1)], -2)
    scaled = offsets / 3 * ref[:, :, None, :, None, 2:] * 0.5
    expected = ref[:, :, None, :, None, :2] + torch.matmul(scaled, rot[:, :, None, None])
    torch.testing.assert_close(loc, expected, rtol=0, atol=1e-6)


def test_rotation_is_a_pixel_isometry_on_non_square_inputs():
    """On a W x H = 2:1 input the rotated sampling points keep their pixel distance to the centre and turn
    by exactly theta in pixel space (the released normalised-coordinate rotation would not)."""
    attn = RotatedMultiScaleDeformableAttention(16, 2, len(SHAPES), 3)
    g = torch.Generator().manual_seed(4)
    width, height = 200.0, 100.0
    ref = torch.rand(1, 6, 1, 4, generator=g) * 0.5 + 0.25
    offsets = torch.randn(1, 6, 2, len(SHAPES), 3, 2, generator=g)
    theta = torch.rand(1, 6, generator=g) * 1.5 - 0.75
    flat = attn.sampling_locations(ref, offsets, SHAPES, reference_angles=torch.zeros_like(theta),
                                   aspect_ratio=width / height)
    turned = attn.sampling_locations(ref, offsets, SHAPES, reference_angles=theta, aspect_ratio=width / height)
    scale = torch.tensor([width, height])
    centre = ref[:, :, None, :, None, :2] * scale
    v0, v1 = flat * scale - centre, turned * scale - centre
    torch.testing.assert_close(v1.norm(dim=-1), v0.norm(dim=-1), rtol=1e-5, atol=1e-4)
    angle0 = torch.atan2(v0[..., 1], v0[..., 0])
    angle1 = torch.atan2(v1[..., 1], v1[..., 0])
    diff = torch.remainder(angle1 - angle0 - theta[:, :, None, None, None] + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-4


@pytest.mark.parametrize("aspect", [1.0, 2.0])
def test_wrap_reference_angle_keeps_the_rectangle(aspect):
    height = 100.0
    width = height * aspect
    boxes = torch.tensor([[0.5, 0.4, 0.3, 0.1], [0.2, 0.6, 0.1, 0.2], [0.5, 0.5, 0.2, 0.1], [0.3, 0.3, 0.2, 0.05]])
    angles = torch.tensor([1.2, -1.0, 0.3, -math.pi / 2])
    new_boxes, new_angles = wrap_reference_angle(boxes, angles, aspect)
    assert (new_angles.abs() <= math.pi / 4 + 1e-6).all()
    assert torch.equal(new_boxes[2], boxes[2]) and new_angles[2] == angles[2]  # |theta| <= pi/4: untouched
    scale = torch.tensor([width, height, width, height])
    before = obb2poly(torch.cat([boxes * scale, angles[:, None]], 1).double()).view(-1, 4, 2)
    after = obb2poly(torch.cat([new_boxes * scale, new_angles[:, None]], 1).double()).view(-1, 4, 2)
    # The same corners in pixels (possibly starting from another corner).
    assert torch.cdist(before, after).min(2).values.max() < 1e-4


@pytest.mark.parametrize("rotated", [False, True])
def test_gradcheck_attention_float64(rotated):
    torch.manual_seed(0)
    cls = RotatedMultiScaleDeformableAttention if rotated else MultiScaleDeformableAttention
    attn = _randomise(cls(8, 2, len(SHAPES), 2)).double()
    query, ref, value, mask = _inputs(batch=1, queries=2, d_model=8, dtype=torch.float64, seed=5)
    mask[:] = False
    angles = torch.tensor([[0.4, -0.7]], dtype=torch.float64)
    query.requires_grad_(True)
    value.requires_grad_(True)
    ref.requires_grad_(True)
    if rotated:
        angles.requires_grad_(True)

        def fn(q, r, v, a):
            return attn(q, r, v, SHAPES, mask, reference_angles=a, aspect_ratio=1.3)
        assert torch.autograd.gradcheck(fn, (query, ref, value, angles), eps=1e-6, atol=1e-5)
    else:
        def fn(q, r, v):
            return attn(q, r, v, SHAPES, mask)
        assert torch.autograd.gradcheck(fn, (query, ref, value), eps=1e-6, atol=1e-5)


def test_core_gradcheck_in_sampling_locations_and_weights():
    g = torch.Generator().manual_seed(7)
    value = torch.randn(1, int(SHAPES.prod(1).sum()), 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    loc = (torch.rand(1, 3, 2, len(SHAPES), 2, 2, generator=g, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    weights = torch.rand(1, 3, 2, len(SHAPES), 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, l, w: ms_deform_attn_core_pytorch(v, SHAPES, l, w),
                                    (value, loc, weights), eps=1e-6, atol=1e-5)


def test_padded_values_are_ignored():
    attn = _randomise(MultiScaleDeformableAttention(16, 2, len(SHAPES), 3))
    query, ref, value, mask = _inputs()
    changed = value.clone()
    changed[mask] = 1e3  # garbage in padded positions
    torch.testing.assert_close(attn(query, ref, changed, SHAPES, mask), attn(query, ref, value, SHAPES, mask))


def test_init_follows_mmcv():
    attn = MultiScaleDeformableAttention(256, 8, 4, 4)
    assert attn.sampling_offsets.weight.abs().max() == 0 and attn.attention_weights.weight.abs().max() == 0
    bias = attn.sampling_offsets.bias.view(8, 4, 4, 2)
    # Head 0 looks along +x, head 2 along +y; point p sits at (p + 1) times the unit direction.
    torch.testing.assert_close(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(bias[2, 3, :, 1], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert bias[1, 0, 0].tolist() == pytest.approx([1.0, 1.0])
