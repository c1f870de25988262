"""Two-stage query selection (reference A.1 "Two-stage proposals").

Every encoder token is a proposal: its pixel centre and a fixed size 0.05 * 2^level (normalised), stored
unactivated (inverse sigmoid). The encoder-stage head (the last of the L + 1 prediction stages) predicts
class logits, a box delta added to the proposal, and angle logits from ``LayerNorm(Linear(memory))``. The
top-K tokens by the class-0 logit become the decoder's initial reference boxes (detached) and angles.

Invalid tokens are padded tokens and tokens whose proposal is out of range: the outer ring of pixel centres
of every level finer than about 50 cells, (i + 0.5) / W_l <= 0.01, so they exist on unpadded tiles too (760
of 21,760 tokens at 1024 x 1024, 592 of 13,294 at 800 x 800). Released, they keep the logit of a zeroed
memory vector and can be selected (with a box at the image corner), which also makes a padded image's result
depend on the padding. ``select_topk`` gives them -inf (the detector's ``mask_invalid_proposals: true``, the
default); the paper profile ranks them as released (``mask_invalid_proposals: false``, docs/fidelity.md).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .position_encoding import proposal_sine_embed

INVALID_PROPOSAL = 10000.0  # released value for padded / out-of-range proposals (unactivated space)


def gen_encoder_output_proposals(padding_mask: Tensor, spatial_shapes: Tensor, box_dim: int = 4,
                                 dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """Grid proposals for every token.

    Args:
        padding_mask: (B, S) bool, True on padding.
        spatial_shapes: (n_levels, 2) long (H_l, W_l).
        box_dim: 4 (cx, cy, w, h), or 5 with an extra angle logit 0 (plain Rotated Deformable DETR: angle 0).
    Returns:
        proposals_unact (B, S, box_dim), inverse-sigmoid of the normalised proposal, ``INVALID_PROPOSAL``
        where invalid; valid (B, S) bool: not padding and all of (cx, cy, w, h) inside (0.01, 0.99).
    """
    device = padding_mask.device
    proposals = []
    for level, (h, w) in enumerate(spatial_shapes.tolist()):
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        wh = torch.full_like(grid_x, 0.05 * 2.0 ** level)
        proposals.append(torch.stack([grid_x, grid_y, wh, wh], -1).view(-1, 4))
    proposals = torch.cat(proposals, 0)[None].expand(padding_mask.shape[0], -1, -1)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1) & ~padding_mask
    unact = torch.log(proposals / (1 - proposals))
    if box_dim == 5:
        unact = torch.cat([unact, torch.zeros_like(unact[..., :1])], -1)
    elif box_dim != 4:
        raise ValueError(f"box_dim must be 4 or 5, got {box_dim}")
    return unact.masked_fill(~valid[..., None], INVALID_PROPOSAL), valid


def select_topk(scores: Tensor, valid: Tensor, k: int) -> Tensor:
    """(B, S) scores, (B, S) valid -> (B, min(k, S)) indices of the best valid tokens (invalid ones last)."""
    k = min(k, scores.shape[1])
    return torch.topk(scores.masked_fill(~valid, -math.inf), k, dim=1).indices


class TwoStageProposals(nn.Module):
    """Memory transform for the encoder-stage head and, for the non-DN variants, queries from proposals.

    Parameters: ``enc_output`` Linear(D, D) + ``enc_output_norm`` LayerNorm(D); with
    ``queries_from_proposals`` also ``pos_trans`` Linear(2D, 2D) + ``pos_trans_norm`` LayerNorm(2D).
    """

    def __init__(self, d_model: int = 256, box_dim: int = 4, queries_from_proposals: bool = False):
        super().__init__()
        self.d_model = d_model
        self.box_dim = box_dim
        self.enc_output = nn.Linear(d_model, d_model)
        self.enc_output_norm = nn.LayerNorm(d_model)
        self.queries_from_proposals = queries_from_proposals
        if queries_from_proposals:
            self.pos_trans = nn.Linear(2 * d_model, 2 * d_model)
            self.pos_trans_norm = nn.LayerNorm(2 * d_model)

    def forward(self, memory: Tensor, padding_mask: Tensor, spatial_shapes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """memory (B, S, D) -> output_memory (B, S, D), proposals_unact (B, S, box_dim), valid (B, S).

        Invalid tokens' memory is zeroed before the Linear (as released).
        """
        proposals, valid = gen_encoder_output_proposals(padding_mask, spatial_shapes, self.box_dim, memory.dtype)
        output_memory = memory.masked_fill(~valid[..., None], 0.0)
        return self.enc_output_norm(self.enc_output(output_memory)), proposals, valid

    def make_queries(self, topk_coords_unact: Tensor) -> tuple[Tensor, Tensor]:
        """Deformable-DETR queries from the selected proposals (B, K, >=4) -> (query_pos, query), each (B, K, D).

        ``LayerNorm(Linear(sine(cx, cy, w, h)))`` split in two halves: positional first, content second.
        """
        embed = proposal_sine_embed(topk_coords_unact[..., :4], num_feats=self.d_model // 2)
        query_pos, query = self.pos_trans_norm(self.pos_trans(embed)).split(self.d_model, dim=-1)
        return query_pos, query
