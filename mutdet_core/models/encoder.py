"""Deformable transformer encoder (reference A.1): 6 post-norm layers of multi-scale deformable self-attention.

Layer order (mmcv ``('self_attn', 'norm', 'ffn', 'norm')``):
    x = norm1(x + dropout(MSDA(x + pos, ref, x)));  x = norm2(x + dropout(Linear(dropout(ReLU(Linear(x))))))

Every token's reference point is its own pixel centre, the same point on every level. Coordinates are
normalised to the *padded* input (the detector contract's frame), so no valid-ratio rescaling is needed;
without padding this is exactly Deformable DETR's reference.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .deformable_attention import MultiScaleDeformableAttention


class FeedForward(nn.Module):
    """Linear -> ReLU -> Dropout -> Linear (the mmcv FFN body; the residual dropout is the layer's)."""

    def __init__(self, d_model: int = 256, ffn_dim: int = 1024, dropout: float = 0.1):
        super().__init__()
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(torch.relu(self.linear1(x))))


class DeformableEncoderLayer(nn.Module):
    """One post-norm encoder layer."""

    def __init__(self, d_model: int = 256, ffn_dim: int = 1024, dropout: float = 0.1, n_levels: int = 4,
                 n_heads: int = 8, n_points: int = 4):
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(d_model, n_heads, n_levels, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor, spatial_shapes: Tensor,
                padding_mask: Tensor | None) -> Tensor:
        """src, pos (B, S, D); reference_points (B, S, 1, 2); padding_mask (B, S) -> (B, S, D)."""
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes, padding_mask)
        src = self.norm1(src + self.dropout1(attn))
        return self.norm2(src + self.dropout2(self.ffn(src)))


def encoder_reference_points(spatial_shapes: Tensor, batch: int, device, dtype=torch.float32) -> Tensor:
    """Pixel-centre reference of every token: (n_levels, 2) shapes -> (B, S, 1, 2) (x, y) in [0, 1]."""
    points = []
    for h, w in spatial_shapes.tolist():
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1))
    return torch.cat(points, 0)[None, :, None, :].expand(batch, -1, -1, -1)


class DeformableEncoder(nn.Module):
    """Stack of ``num_layers`` encoder layers plus the learned level embedding.

    Parameters: ``layers.i.*`` and ``level_embed`` (n_levels, D), added to the sine position encoding of
    level l before the first layer (normal init, as released).
    """

    def __init__(self, layer: DeformableEncoderLayer, num_layers: int, n_levels: int, d_model: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.level_embed = nn.Parameter(torch.empty(n_levels, d_model))
        nn.init.normal_(self.level_embed)

    def forward(self, src: Tensor, pos: Tensor, level_index: Tensor, spatial_shapes: Tensor,
                padding_mask: Tensor | None) -> Tensor:
        """Encode flattened multi-scale tokens.

        Args:
            src: (B, S, D) flattened neck maps, finest level first.
            pos: (B, S, D) sine position encoding (without the level embedding).
            level_index: (S,) long, the level of every token.
            spatial_shapes: (n_levels, 2) long (H_l, W_l).
            padding_mask: (B, S) bool, True on padding.
        Returns:
            memory (B, S, D).
        """
        pos = pos + self.level_embed[level_index]
        reference_points = encoder_reference_points(spatial_shapes, src.shape[0], src.device, src.dtype)
        out = src
        for layer in self.layers:
            out = layer(out, pos, reference_points, spatial_shapes, padding_mask)
        return out


def build_encoder(d_model: int = 256, num_layers: int = 6, ffn_dim: int = 1024, dropout: float = 0.1,
                  n_levels: int = 4, n_heads: int = 8, n_points: int = 4) -> DeformableEncoder:
    layer = DeformableEncoderLayer(d_model, ffn_dim, dropout, n_levels, n_heads, n_points)
    return DeformableEncoder(layer, num_layers, n_levels, d_model)
