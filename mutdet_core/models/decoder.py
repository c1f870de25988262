"""Deformable transformer decoder with iterative box refinement (reference A.1, A.4, A.5, A.7).

Layer order (mmcv ``('self_attn', 'norm', 'cross_attn', 'norm', 'ffn', 'norm')``, post-norm):
    q = k = x + pos;  x = norm1(x + dropout(MHA(q, k, x, attn_mask)))
    x = norm2(x + dropout(MSDA(x + pos, reference_box, memory)))        # rotated MSDA in the full model
    x = norm3(x + dropout(FFN(x)))

Two styles, chosen by the variant:

``style='dino'`` (full ARS-DETR, ``DNARSDeformableDetrTransformerDecoder``):
  - the positional query is recomputed in every layer: ``query_pos_head`` = MLP(2D -> D -> D) on
    ``gen_sineembed_for_position`` of the current reference box;
  - after layer l the box branch l (on the layer output, *before* the output LayerNorm, as released and as
    in DINO) refines the reference: new = sigmoid(delta + inverse_sigmoid(ref, eps=1e-3)); the next layer
    gets it detached, but the head of layer l + 1 adds its delta to the *undetached* one ("look forward
    twice"), so the list of references returned keeps the graph;
  - outputs pass a shared LayerNorm (``norm``) before the heads;
  - with rotated attention, the angle branch l re-decodes an absolute reference angle (detached) for layer
    l + 1; before each layer the angle is folded into [-pi/4, pi/4] with the box's w/h swapped where needed,
    which also changes the w/h the positional query sees.

``style='deformable'`` (CSL / AR-CSL / Rotated Deformable DETR, ``ARSRotatedDeformableDetrTransformerDecoder``):
  - a fixed positional query (from the proposals) in every layer; no output LayerNorm;
  - refinement with eps 1e-5 and detached references (Deformable DETR); with a 5-d reference (plain Rotated
    Deformable DETR) the angle logit is refined additively in the same way and attention uses the first 4.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .box_ops import inverse_sigmoid
from .deformable_attention import MultiScaleDeformableAttention
from .encoder import FeedForward
from .heads import MLP, PredictionHeads
from .position_encoding import gen_sineembed_for_position
from .rotated_deformable_attention import RotatedMultiScaleDeformableAttention, wrap_reference_angle


class DeformableDecoderLayer(nn.Module):
    """Self-attention, (rotated) multi-scale deformable cross-attention and FFN, each with residual + LayerNorm."""

    def __init__(self, d_model: int = 256, ffn_dim: int = 1024, dropout: float = 0.1, n_levels: int = 4,
                 n_heads: int = 8, n_points: int = 4, rotated: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        attention = RotatedMultiScaleDeformableAttention if rotated else MultiScaleDeformableAttention
        self.cross_attn = attention(d_model, n_heads, n_levels, n_points)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, query_pos: Tensor, reference_boxes: Tensor, memory: Tensor,
                spatial_shapes: Tensor, memory_padding_mask: Tensor | None, self_attn_mask: Tensor | None = None,
                **rotation_kwargs) -> Tensor:
        """tgt, query_pos (B, Q, D); reference_boxes (B, Q, 1, 4); memory (B, S, D) -> (B, Q, D).

        self_attn_mask: (Q, Q) bool, True = may not attend. rotation_kwargs: ``reference_angles`` (B, Q)
        and ``aspect_ratio`` for the rotated cross-attention.
        """
        q = k = tgt + query_pos
        attn = self.self_attn(q, k, tgt, attn_mask=self_attn_mask, need_weights=False)[0]
        tgt = self.norm1(tgt + self.dropout1(attn))
        attn = self.cross_attn(tgt + query_pos, reference_boxes, memory, spatial_shapes, memory_padding_mask,
                               **rotation_kwargs)
        tgt = self.norm2(tgt + self.dropout2(attn))
        return self.norm3(tgt + self.dropout3(self.ffn(tgt)))


class DeformableDecoder(nn.Module):
    """``num_layers`` decoder layers with box refinement through the (external) prediction heads.

    Parameters: ``layers.i.*``; for ``style='dino'`` also ``query_pos_head.layers.{0,1}`` and ``norm``.
    """

    def __init__(self, layer: DeformableDecoderLayer, num_layers: int, d_model: int, style: str = "dino",
                 rotated: bool = False):
        super().__init__()
        if style not in ("dino", "deformable"):
            raise ValueError(f"decoder style must be 'dino' or 'deformable', got {style!r}")
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.d_model = d_model
        self.style = style
        self.rotated = rotated
        self.refine_eps = 1e-3 if style == "dino" else 1e-5
        if style == "dino":
            self.query_pos_head = MLP(2 * d_model, d_model, d_model, 2)
            self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, reference: Tensor, memory: Tensor, spatial_shapes: Tensor,
                memory_padding_mask: Tensor | None, heads: PredictionHeads, angle_coder: nn.Module,
                query_pos: Tensor | None = None, reference_angles: Tensor | None = None,
                self_attn_mask: Tensor | None = None, aspect_ratio: float = 1.0) -> tuple[Tensor, list[Tensor]]:
        """Decode queries.

        Args:
            tgt: (B, Q, D) content queries (DN queries first, if any).
            reference: (B, Q, box_dim) initial reference boxes, sigmoid space (detached).
            memory: (B, S, D) encoder output (the decoder's values).
            spatial_shapes: (n_levels, 2); memory_padding_mask: (B, S) bool, True on padding.
            heads: the prediction heads; ``box_branches[l]`` / ``angle_branches[l]`` refine after layer l.
            angle_coder: decodes angle logits to radians (rotated attention only).
            query_pos: (B, Q, D) fixed positional query (``style='deformable'``), else None.
            reference_angles: (B, Q) initial reference angles, radians (rotated attention only).
            self_attn_mask: (Q, Q) bool, True = may not attend (DN groups).
            aspect_ratio: W / H of the padded input (rotated attention only).
        Returns:
            hs (L, B, Q, D): layer outputs (after ``norm`` for the dino style);
            references: L + 1 tensors (B, Q, box_dim), sigmoid space; the head of layer l adds its delta to
            ``references[l]`` (index 0: the initial reference; dino style: undetached, see module docstring).
        """
        if self.style == "deformable" and query_pos is None:
            raise ValueError("the 'deformable' decoder style needs the fixed query_pos from the proposals")
        if self.rotated and reference_angles is None:
            raise ValueError("rotated attention needs reference_angles")
        output = tgt
        hs, references = [], [reference]
        for lid, layer in enumerate(self.layers):
            boxes = reference[..., :4]
            rotation = {}
            if self.rotated:
                boxes, angles = wrap_reference_angle(boxes, reference_angles, aspect_ratio)
                rotation = {"reference_angles": angles, "aspect_ratio": aspect_ratio}
            if self.style == "dino":
                query_pos = self.query_pos_head(gen_sineembed_for_position(boxes, self.d_model // 2))
            output = layer(output, query_pos, boxes[:, :, None], memory, spatial_shapes, memory_padding_mask,
                           self_attn_mask, **rotation)
            new_reference = (heads.box_branches[lid](output) + inverse_sigmoid(reference, self.refine_eps)).sigmoid()
            references.append(new_reference if self.style == "dino" else new_reference.detach())
            reference = new_reference.detach()
            if self.rotated:
                if heads.angle_branches is not None:
                    logits = heads.angle_branches[lid](output)
                else:  # 5-d references carry the angle logit
                    logits = inverse_sigmoid(reference, self.refine_eps)[..., 4:5]
                reference_angles = angle_coder.decode(logits).detach()
            hs.append(self.norm(output) if self.style == "dino" else output)
        return torch.stack(hs), references


def build_decoder(d_model: int = 256, num_layers: int = 6, ffn_dim: int = 1024, dropout: float = 0.1,
                  n_levels: int = 4, n_heads: int = 8, n_points: int = 4, style: str = "dino",
                  rotated: bool = False) -> DeformableDecoder:
    layer = DeformableDecoderLayer(d_model, ffn_dim, dropout, n_levels, n_heads, n_points, rotated)
    return DeformableDecoder(layer, num_layers, d_model, style, rotated)
