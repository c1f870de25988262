"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

``ms_deform_attn_core_pytorch`` is the reference sampling kernel (bilinear ``grid_sample`` per level,
``align_corners=False``, zero padding: the mmcv / Deformable-DETR PyTorch path). It runs on CPU and CUDA
alike; no compiled extension is needed. ``MultiScaleDeformableAttention`` is the module used by the
encoder of every variant and by the decoder of the non-rotated variants; the rotated decoder attention
of the full ARS-DETR subclasses it in ``rotated_deformable_attention.py``.

Unlike mmcv, the module returns the attended values only; the residual connection and its dropout live
in the transformer layer (Deformable-DETR's own layout), which computes the same thing.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ms_deform_attn_core_pytorch(value: Tensor, spatial_shapes: Tensor | list, sampling_locations: Tensor,
                                attention_weights: Tensor) -> Tensor:
    """Bilinear multi-scale sampling followed by the attention-weighted sum.

    Args:
        value: (B, S, n_heads, head_dim), the flattened levels one after the other (S = sum H_l * W_l).
        spatial_shapes: (n_levels, 2) (H_l, W_l) as a tensor or a list of pairs.
        sampling_locations: (B, Q, n_heads, n_levels, n_points, 2) (x, y) normalised to [0, 1] over the
            padded feature map; locations outside read zeros.
        attention_weights: (B, Q, n_heads, n_levels, n_points), softmax-normalised over levels x points.
    Returns:
        (B, Q, n_heads * head_dim).
    """
    shapes = spatial_shapes.tolist() if isinstance(spatial_shapes, Tensor) else [tuple(s) for s in spatial_shapes]
    batch, _, n_heads, head_dim = value.shape
    _, n_queries, _, n_levels, n_points, _ = sampling_locations.shape
    value_list = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    sampled = []
    for level, (h, w) in enumerate(shapes):
        # (B, H*W, nH, Dh) -> (B*nH, Dh, H, W)
        value_l = value_list[level].flatten(2).transpose(1, 2).reshape(batch * n_heads, head_dim, h, w)
        # (B, Q, nH, P, 2) -> (B*nH, Q, P, 2)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    # (B*nH, Dh, Q, L*P) weighted by (B*nH, 1, Q, L*P)
    weights = attention_weights.transpose(1, 2).reshape(batch * n_heads, 1, n_queries, n_levels * n_points)
    output = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)
    return output.view(batch, n_heads * head_dim, n_queries).transpose(1, 2).contiguous()


class MultiScaleDeformableAttention(nn.Module):
    """Deformable attention over ``n_levels`` feature maps, ``n_points`` samples per head and level.

    Args:
        d_model: query / value width (256).
        n_heads, n_levels, n_points: 8, 4, 4 in every released config.
    Parameters (names are part of the checkpoint contract):
        sampling_offsets: Linear(d_model -> n_heads * n_levels * n_points * 2)
        attention_weights: Linear(d_model -> n_heads * n_levels * n_points)
        value_proj, output_proj: Linear(d_model -> d_model)
    """

    def __init__(self, d_model: int = 256, n_heads: int = 8, n_levels: int = 4, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_levels = n_levels
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """mmcv / Deformable-DETR init: zero offset weights, bias = a ring of head directions.

        Head h starts looking along angle 2*pi*h/n_heads, the direction vector scaled so that its larger
        component is 1, and point p at (p + 1) times that vector; attention weights start uniform.
        """
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def sampling_locations(self, reference_points: Tensor, offsets: Tensor, spatial_shapes: Tensor,
                           **_unused) -> Tensor:
        """Offsets (B, Q, nH, L, P, 2) -> sampling locations (B, Q, nH, L, P, 2) in [0, 1].

        reference_points (B, Q, L or 1, 2): offsets are in pixels of each level, divided by (W_l, H_l).
        reference_points (B, Q, L or 1, 4) boxes (cx, cy, w, h): offsets are in units of the box,
        loc = centre + offset / n_points * wh * 0.5 (Deformable DETR two-stage).
        """
        if reference_points.shape[-1] == 2:
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
            return reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        if reference_points.shape[-1] == 4:
            ref = reference_points[:, :, None, :, None, :]
            return ref[..., :2] + offsets / self.n_points * ref[..., 2:] * 0.5
        raise ValueError(f"reference_points must end in 2 or 4, got {tuple(reference_points.shape)}")

    def forward(self, query: Tensor, reference_points: Tensor, value: Tensor, spatial_shapes: Tensor,
                value_padding_mask: Tensor | None = None, **location_kwargs) -> Tensor:
        """Deformable attention.

        Args:
            query: (B, Q, d_model), positional encoding already added.
            reference_points: (B, Q, n_levels or 1, 2 | 4) in [0, 1] of the padded input.
            value: (B, S, d_model), the flattened multi-scale maps.
            spatial_shapes: (n_levels, 2) long (H_l, W_l).
            value_padding_mask: (B, S) bool, True on padding (those values are zeroed).
            location_kwargs: extra arguments of ``sampling_locations`` (reference angles for the rotated
                subclass).
        Returns:
            (B, Q, d_model), before dropout and residual.
        """
        batch, n_queries, _ = query.shape
        n_values = value.shape[1]
        value = self.value_proj(value)
        if value_padding_mask is not None:
            value = value.masked_fill(value_padding_mask[..., None], 0.0)
        value = value.view(batch, n_values, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(batch, n_queries, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(batch, n_queries, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(-1).view(batch, n_queries, self.n_heads, self.n_levels, self.n_points)
        locations = self.sampling_locations(reference_points, offsets, spatial_shapes, **location_kwargs)
        output = ms_deform_attn_core_pytorch(value, spatial_shapes, locations, weights)
        return self.output_proj(output)
