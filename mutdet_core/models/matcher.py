"""Hungarian matcher of the ARS-DETR family (reference A.6, A.3 and A.7).

ARS-DETR (``box_cost='giou_hbb'``), cost per (prediction, ground truth) pair:
    cost_class * focal(alpha 0.25, gamma 2)            (mmdet FocalLossCost, eps 1e-12)
  + cost_bbox  * L1(pred cxcywh, gt cxcywh)
  + cost_giou  * -GIoU(angle-free xyxy boxes)
  + cost_angle * mean_bins BCE-with-logits(angle logits, gt (AR-)CSL label) [* 2r/(1+r) with ARM]

Plain Rotated Deformable DETR (``box_cost='rotated_iou'``, regression angle coder):
    cost_class * focal + cost_bbox * L1 over (cx, cy, w, h, theta) + cost_giou * -IoU(rotated boxes),
    the IoU of normalised boxes as released (mmcv ``box_iou_rotated``), here ``geometry.obb_iou``.

The released ``ARS_HungarianAssigner`` receives the prediction in xyxy while ``BBoxL1Cost('xywh')``
converts only the ground truth to cxcywh, so its L1 *cost* compares pred-xyxy with gt-cxcywh (the L1
*loss* uses cxcywh for both). We default to the consistent cxcywh cost; ``released_l1_cost_quirk=True``
reproduces the released mismatch for exact replication.

Matching is done per image (``scipy.optimize.linear_sum_assignment``): with two-stage encoder proposals
(all S tokens, tens of thousands) and pre-training targets (up to 1000 boxes per image) the batch-wide
cost matrix of DETR would be mostly cross-image blocks that are thrown away.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ..geometry.polygon_iou import obb_iou
from .box_ops import aspect_ratio_weight, aspect_ratios, box_cxcywh_to_xyxy, generalized_box_iou

BOX_COSTS = ("giou_hbb", "rotated_iou")


def focal_cost(logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0, eps: float = 1e-12) -> Tensor:
    """mmdet FocalLossCost: (Q, C) logits, (n,) labels -> (Q, n) cost = pos - neg at the gt class."""
    prob = logits.sigmoid()
    neg = -(1 - prob + eps).log() * (1 - alpha) * prob.pow(gamma)
    pos = -(prob + eps).log() * alpha * (1 - prob).pow(gamma)
    return pos[:, labels] - neg[:, labels]


def bce_mean_cost(logits: Tensor, soft_labels: Tensor) -> Tensor:
    """mmdet CrossEntropyLossCost(use_sigmoid): mean over the A bins of BCE-with-logits.

    (Q, A) logits, (n, A) soft labels -> (Q, n). BCE(x, y) = y * softplus(-x) + (1 - y) * softplus(x), so
    the mean over bins is two matrix products: no (Q, n, A) tensor is materialised.
    """
    pos = F.softplus(-logits)
    neg = F.softplus(logits)
    return (pos @ soft_labels.T + neg @ (1 - soft_labels).T) / logits.shape[-1]


class HungarianMatcher(nn.Module):
    """One-to-one assignment between predictions and ground truths of each image.

    Args:
        cost_class, cost_bbox, cost_giou, cost_angle: weights (2, 2, 5, 2 in ARS-DETR; ``cost_giou`` is the
            rotated-IoU weight for ``box_cost='rotated_iou'``, where ``cost_angle`` is unused).
        angle_coder: encodes target angles to (n, A) labels for the angle cost (CSL / AR-CSL).
        aspect_ratio_weighting: multiply each gt's angle-cost column by 2r/(1+r) (ARM).
        box_cost: 'giou_hbb' (ARS-DETR, CSL/AR-CSL variants) or 'rotated_iou' (plain Rotated D-DETR).
        released_l1_cost_quirk: L1 cost between pred xyxy and gt cxcywh, as the released code does.
    """

    def __init__(self, cost_class: float = 2.0, cost_bbox: float = 2.0, cost_giou: float = 5.0,
                 cost_angle: float = 2.0, angle_coder: nn.Module | None = None, aspect_ratio_weighting: bool = True,
                 box_cost: str = "giou_hbb", focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 released_l1_cost_quirk: bool = False):
        super().__init__()
        if box_cost not in BOX_COSTS:
            raise ValueError(f"unknown box_cost {box_cost!r}; expected one of {BOX_COSTS}")
        if box_cost == "giou_hbb" and cost_angle != 0 and (angle_coder is None or angle_coder.num_bins < 2):
            raise ValueError("box_cost='giou_hbb' with an angle cost needs a CSL / AR-CSL angle coder")
        self.cost_class, self.cost_bbox, self.cost_giou, self.cost_angle = cost_class, cost_bbox, cost_giou, cost_angle
        self.angle_coder = angle_coder
        self.aspect_ratio_weighting = aspect_ratio_weighting
        self.box_cost = box_cost
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.released_l1_cost_quirk = released_l1_cost_quirk

    def angle_targets(self, target: dict) -> Tensor:
        """(n, A) angle labels of one image: ``target['angle_targets']`` if the criterion cached them."""
        if "angle_targets" in target:
            return target["angle_targets"]
        return self.angle_coder.encode(target["angles"], target_aspect_ratios(target))

    @torch.no_grad()
    def cost_matrix(self, pred: dict, target: dict) -> Tensor:
        """Cost of one image.

        Args:
            pred: 'pred_logits' (Q, C), 'pred_boxes' (Q, 4) cxcywh, 'pred_angle_logits' (Q, A),
                'pred_angles' (Q,) radians.
            target: 'labels' (n,), 'boxes' (n, 4) cxcywh, 'angles' (n,), optional 'aspect_ratios' (n,).
        Returns:
            (Q, n) float32 cost.
        """
        logits = pred["pred_logits"].float()
        boxes = pred["pred_boxes"].float()
        tgt_boxes = target["boxes"].to(boxes)
        cost = self.cost_class * focal_cost(logits, target["labels"], self.focal_alpha, self.focal_gamma)
        if self.box_cost == "rotated_iou":
            rboxes = torch.cat([boxes, pred["pred_angles"].float()[:, None]], dim=-1)
            tgt_rboxes = torch.cat([tgt_boxes, target["angles"].to(boxes)[:, None]], dim=-1)
            cost = cost + self.cost_bbox * torch.cdist(rboxes, tgt_rboxes, p=1)
            # Exact float64 IoU of mutdet_core.geometry (the evaluation's IoU); no gradient is needed here.
            cost = cost - self.cost_giou * obb_iou(rboxes, tgt_rboxes).to(cost)
            return cost
        pred_for_l1 = box_cxcywh_to_xyxy(boxes) if self.released_l1_cost_quirk else boxes
        cost = cost + self.cost_bbox * torch.cdist(pred_for_l1, tgt_boxes, p=1)
        cost = cost - self.cost_giou * generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes))
        if self.cost_angle != 0:
            angle_cost = bce_mean_cost(pred["pred_angle_logits"].float(), self.angle_targets(target).to(boxes))
            if self.aspect_ratio_weighting:
                angle_cost = angle_cost * aspect_ratio_weight(target_aspect_ratios(target).to(boxes))[None, :]
            cost = cost + self.cost_angle * angle_cost
        return cost

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
        """Match every image of the batch.

        Args:
            outputs: 'pred_logits' (B, Q, C), 'pred_boxes' (B, Q, 4), 'pred_angle_logits' (B, Q, A),
                'pred_angles' (B, Q); other keys are ignored.
            targets: B dicts with 'labels' (n_b,), 'boxes' (n_b, 4), 'angles' (n_b,).
        Returns:
            B tuples (pred_idx, gt_idx) of int64 tensors of length min(Q, n_b) on the outputs' device,
            sorted by pred_idx (scipy's order); empty for an image without targets.
        """
        batch_size = outputs["pred_logits"].shape[0]
        if len(targets) != batch_size:
            raise ValueError(f"got {len(targets)} target dicts for a batch of {batch_size}")
        device = outputs["pred_logits"].device
        keys = [k for k in ("pred_logits", "pred_boxes", "pred_angle_logits", "pred_angles") if k in outputs]
        indices = []
        for b, target in enumerate(targets):
            if len(target["labels"]) == 0:
                empty = torch.empty(0, dtype=torch.int64, device=device)
                indices.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix({k: outputs[k][b] for k in keys}, target).cpu()
            if not torch.isfinite(cost).all():
                raise ValueError(f"matching cost of image {b} has NaN/inf entries: the predictions diverged")
            pred_idx, gt_idx = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(pred_idx, dtype=torch.int64, device=device),
                            torch.as_tensor(gt_idx, dtype=torch.int64, device=device)))
        return indices


def target_aspect_ratios(target: dict) -> Tensor:
    """(n,) aspect ratios r >= 1 of one image's targets: ``target['aspect_ratios']`` when the data
    pipeline provides pixel-space ratios (needed only for non-square padded inputs), else from the
    normalised boxes."""
    if "aspect_ratios" in target:
        return target["aspect_ratios"]
    return aspect_ratios(target["boxes"])


def build_matcher(angle_coder: nn.Module, aspect_ratio_weighting: bool = True, box_cost: str = "giou_hbb",
                  cost_class: float = 2.0, cost_bbox: float = 2.0, cost_giou: float = 5.0, cost_angle: float = 2.0,
                  released_l1_cost_quirk: bool = False) -> HungarianMatcher:
    """Matcher with the released ARS-DETR weights; ``box_cost='rotated_iou'`` gives plain Rotated D-DETR's."""
    if box_cost == "rotated_iou":
        cost_angle = 0.0
    return HungarianMatcher(cost_class=cost_class, cost_bbox=cost_bbox, cost_giou=cost_giou, cost_angle=cost_angle,
                            angle_coder=angle_coder, aspect_ratio_weighting=aspect_ratio_weighting,
                            box_cost=box_cost, released_l1_cost_quirk=released_l1_cost_quirk)
