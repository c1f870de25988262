"""Sine position encodings of the ARS-DETR family (reference A.1, A.5).

Three encodings share one sine/cosine code:

- ``PositionEmbeddingSine``: the 2-d encoding of every feature-map pixel fed to the encoder (mmdet
  ``SinePositionalEncoding(num_feats=128, normalize=True, offset=-0.5)``: scale 2*pi, temperature 10000,
  eps 1e-6). Coordinates are cumulative counts over the *valid* (non-padded) pixels, so a padded image
  gets the same encoding on its valid region as the same image unpadded.
- ``gen_sineembed_for_position``: the DINO-style embedding of a 4-d reference box, order (y, x, w, h),
  from which the decoder's query-position MLP computes the positional query in every layer.
- ``proposal_sine_embed``: the two-stage Deformable-DETR embedding of an *unactivated* proposal
  (sigmoid inside), order (x, y, w, h), used by the non-DN variants to make queries from proposals.

All three interleave sin and cos: feature 2i is sin(v / T^(2i/F)) and 2i+1 is cos(v / T^(2i/F)).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _sine(values: Tensor, num_feats: int = 128, temperature: float = 10000.0) -> Tensor:
    """(...,) already-scaled coordinates -> (..., num_feats) interleaved sin/cos features."""
    dtype = values.dtype if values.is_floating_point() else torch.float32
    dim_t = torch.arange(num_feats, dtype=dtype, device=values.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos = values[..., None].to(dtype) / dim_t
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)


class PositionEmbeddingSine(nn.Module):
    """2-d sine encoding of a padded feature map (no parameters).

    Args:
        num_feats: features per axis; the output has 2 * num_feats channels (= d_model).
        normalize: scale the cumulative coordinates to [0, scale] over the valid region.
        offset: added to the 1-based cumulative coordinate before normalising (-0.5 puts the pixel centre
            at (i + 0.5) / n, as the released config does).
    """

    def __init__(self, num_feats: int = 128, temperature: float = 10000.0, normalize: bool = True,
                 scale: float = 2 * math.pi, offset: float = -0.5, eps: float = 1e-6):
        super().__init__()
        self.num_feats = num_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.offset = offset
        self.eps = eps

    def forward(self, mask: Tensor) -> Tensor:
        """mask (B, H, W) bool, True on padding -> (B, 2 * num_feats, H, W) float32, channels (y, x)."""
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + self.eps) * self.scale
        pos_x = _sine(x_embed, self.num_feats, self.temperature)
        pos_y = _sine(y_embed, self.num_feats, self.temperature)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def gen_sineembed_for_position(pos: Tensor, num_feats: int = 128, temperature: float = 10000.0) -> Tensor:
    """DINO query-position embedding of reference points or boxes in [0, 1].

    Args:
        pos: (..., 2) (x, y) or (..., 4) (x, y, w, h), sigmoid space.
    Returns:
        (..., 2 * num_feats) for points, (..., 4 * num_feats) for boxes; blocks ordered (y, x[, w, h]).
    """
    scaled = pos * (2 * math.pi)
    x = _sine(scaled[..., 0], num_feats, temperature)
    y = _sine(scaled[..., 1], num_feats, temperature)
    if pos.shape[-1] == 2:
        return torch.cat((y, x), dim=-1)
    if pos.shape[-1] == 4:
        w = _sine(scaled[..., 2], num_feats, temperature)
        h = _sine(scaled[..., 3], num_feats, temperature)
        return torch.cat((y, x, w, h), dim=-1)
    raise ValueError(f"gen_sineembed_for_position expects (..., 2) or (..., 4), got {tuple(pos.shape)}")


def proposal_sine_embed(proposals_unact: Tensor, num_feats: int = 128, temperature: float = 10000.0) -> Tensor:
    """Deformable-DETR two-stage proposal embedding: (B, K, 4) unactivated (cx, cy, w, h) -> (B, K, 4 * num_feats).

    The sigmoid is applied here (as in the released ``get_proposal_pos_embed``); blocks ordered (x, y, w, h).
    """
    scaled = proposals_unact.sigmoid() * (2 * math.pi)
    return _sine(scaled, num_feats, temperature).flatten(-2)


def build_position_encoding(d_model: int = 256) -> PositionEmbeddingSine:
    """The released encoder position encoding for ``d_model`` channels (num_feats = d_model // 2)."""
    if d_model % 2:
        raise ValueError(f"d_model must be even for the sine position encoding, got {d_model}")
    return PositionEmbeddingSine(num_feats=d_model // 2, normalize=True, offset=-0.5)
