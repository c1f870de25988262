"""Per-stage prediction heads (reference A.1 "Heads", A.7).

There are L + 1 stages: decoder layers 0..L-1 and, at index L, the encoder proposals. Each stage has its
own (not shared) branches, because box refinement feeds each layer's box delta to the next layer:

- ``class_branches[i]``: Linear(D -> C), sigmoid / focal, no background logit; bias = -log((1-0.01)/0.01).
- ``box_branches[i]``: MLP D -> D -> D -> box_dim with ReLU (DETR's ``MLP``); last layer zero weight and
  bias, so every stage starts by predicting "no change" to its reference (two-stage: bias[2:] = 0 too).
  box_dim is 4 (cx, cy, w, h) for the CSL / AR-CSL variants and 5 (with an angle logit) for plain
  Rotated Deformable DETR.
- ``angle_branches[i]``: Linear(D -> A) CSL / AR-CSL logits (A = 180), PyTorch default init (the released
  focal-bias init is commented out). Absent for the 5-parameter variant.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .box_ops import inverse_sigmoid


class MLP(nn.Module):
    """Very simple multi-layer perceptron (also called FFN), as in DETR: Linear layers with ReLU between."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class PredictionHeads(nn.Module):
    """Class / box / angle branches for ``num_stages`` = L + 1 stages.

    Args:
        d_model: input width D.
        num_classes: C (15 for DOTA, 256 pseudo-classes in pre-training).
        num_stages: L + 1 (decoder layers plus the encoder stage, which is the last index).
        box_dim: 4 or 5.
        num_angle_bins: A (180) or 0 for no angle branch (5-parameter regression).
        prior_prob: focal prior for the class bias.
    """

    def __init__(self, d_model: int, num_classes: int, num_stages: int, box_dim: int = 4,
                 num_angle_bins: int = 180, prior_prob: float = 0.01):
        super().__init__()
        self.num_classes = num_classes
        self.box_dim = box_dim
        self.num_angle_bins = num_angle_bins
        bias = -math.log((1 - prior_prob) / prior_prob)
        self.class_branches = nn.ModuleList(nn.Linear(d_model, num_classes) for _ in range(num_stages))
        self.box_branches = nn.ModuleList(MLP(d_model, d_model, box_dim, 3) for _ in range(num_stages))
        for cls, box in zip(self.class_branches, self.box_branches):
            nn.init.constant_(cls.bias, bias)
            nn.init.constant_(box.layers[-1].weight, 0.0)
            nn.init.constant_(box.layers[-1].bias, 0.0)
        self.angle_branches = (nn.ModuleList(nn.Linear(d_model, num_angle_bins) for _ in range(num_stages))
                               if num_angle_bins > 0 else None)

    def forward(self, stage: int, features: Tensor, reference_unact: Tensor, angle_coder: nn.Module
                ) -> tuple[dict[str, Tensor], Tensor]:
        """Predictions of one stage.

        Args:
            stage: stage index (L for the encoder proposals).
            features: (B, N, D).
            reference_unact: (B, N, box_dim) reference in unactivated space (decoder: inverse_sigmoid of the
                reference box; encoder: the grid proposal).
            angle_coder: decodes angle logits (..., A) to radians.
        Returns:
            dict ``pred_logits`` (B, N, C), ``pred_boxes`` (B, N, 4) sigmoid cxcywh,
            ``pred_angle_logits`` (B, N, A) (A = 1: the angle logit of the 5-d box), ``pred_angles`` (B, N);
            and the unactivated box (B, N, box_dim) (the two-stage selection gathers its references from it).
        """
        box_unact = self.box_branches[stage](features) + reference_unact
        if self.angle_branches is not None:
            angle_logits = self.angle_branches[stage](features)
        else:
            angle_logits = box_unact[..., 4:5]
        return {
            "pred_logits": self.class_branches[stage](features),
            "pred_boxes": box_unact[..., :4].sigmoid(),
            "pred_angle_logits": angle_logits,
            "pred_angles": angle_coder.decode(angle_logits),
        }, box_unact

    def decoder_stage(self, stage: int, features: Tensor, reference: Tensor, angle_coder: nn.Module,
                      eps: float = 1e-5) -> dict[str, Tensor]:
        """Predictions dict of ``forward`` for a sigmoid-space reference (B, N, box_dim) (adds
        ``inverse_sigmoid(reference, eps)``, eps 1e-5 as the released heads)."""
        return self.forward(stage, features, inverse_sigmoid(reference, eps), angle_coder)[0]
