"""Set criterion of the ARS-DETR family (reference A.2, A.3, A.5, A.6, A.7).

For each prediction stage the matcher pairs queries with ground truths, then the losses of the
``loss_map`` dispatch table are computed on the pairs (the facebookresearch/detr pattern):

- 'labels'        -> loss_cls:   sigmoid focal loss (alpha 0.25, gamma 2) over all queries and classes,
                                 summed and divided by num_pos (mmdet avg_factor).
- 'boxes'         -> loss_bbox:  L1 on normalised (cx, cy, w, h); loss_iou: 1 - GIoU of the angle-free
                                 axis-aligned boxes (ARS-DETR's "horizontal" GIoU).
- 'angles'        -> loss_angle: BCE-with-logits over the A bins against the (AR-)CSL soft label, weight
                                 2r/(r+1) per positive with aspect-ratio weighting, / (num_pos * A).
- 'rotated_boxes' -> loss_bbox:  L1 on (cx, cy, w, h, theta); loss_iou: -log(rotated IoU) (plain Rotated
                                 D-DETR; its angle is regressed, so there is no loss_angle).

num_pos = number of **matched positives** of the stage in the batch (sum over images of min(Q, n) for a
stage of Q predictions and n ground truths), averaged over DDP ranks when torch.distributed is initialised
(mmdet ``reduce_mean``, as ``sync_cls_avg_factor=True`` does), clamped to >= 1. This is the released ARS-DETR
/ MutDet head: ``get_targets`` counts the Hungarian assigner's positive indices (``num_total_pos``) and every
loss of ``loss_single`` divides by it. DETR divides by the number of ground truths instead; the two agree
while every image has n <= Q and differ when it has more boxes than queries (pre-training on up to 1,000
SAM boxes with 300 queries): each positive then weighs n / min(Q, n) times more than under DETR's rule.

Stages and key names (weights are those of the base key, see ``resolve_loss_weight``):
- last decoder layer: ``loss_cls``, ``loss_bbox``, ``loss_iou``, ``loss_angle``
- decoder layer i of ``aux_outputs`` (i = 0..L-2): the same keys with suffix ``_{i}``
- encoder proposals (``enc_outputs``, all tokens, class-agnostic: every label is 0): prefix ``enc_``
- denoising (``dn_outputs``, all L layers): prefix ``dn_``, suffix ``_{l}`` for layers l = 0..L-2. Positive
  slot g*2M + i is paired with ground truth i; every DN slot gets the classification loss (negatives and
  padding have an all-zero target); normalised by num_pos_dn = G * num_gts (every DN positive is matched by
  construction, as released ``get_dn_target``).
"""
from __future__ import annotations

import re

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .box_ops import aspect_ratio_weight, box_cxcywh_to_xyxy, elementwise_generalized_box_iou
from .matcher import HungarianMatcher, build_matcher, target_aspect_ratios
from .rotated_iou_loss import rotated_iou_loss

BOX_LOSSES = ("giou_hbb", "rotated_iou")
DEFAULT_WEIGHTS = {"loss_cls": 2.0, "loss_bbox": 2.0, "loss_iou": 5.0, "loss_angle": 2.0}
PRED_KEYS = ("pred_logits", "pred_boxes", "pred_angle_logits", "pred_angles")


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise sigmoid focal loss (RetinaNet), same shape as ``logits``; ``targets`` in {0, 1}."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * ce * (1 - p_t) ** gamma


def average_num_pos(num: float, device) -> float:
    """Mean of ``num`` over DDP ranks (when initialised), clamped to >= 1."""
    value = torch.as_tensor([float(num)], dtype=torch.float32, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value)
        value = value / dist.get_world_size()
    return max(value.item(), 1.0)


def num_matched(indices: list[tuple[Tensor, Tensor]], device) -> float:
    """The released loss normaliser of a matched stage: its positives (sum of min(Q, n_b) Hungarian pairs over
    the batch), averaged over DDP ranks, >= 1 (see the module docstring)."""
    return average_num_pos(sum(len(src) for src, _ in indices), device)


def resolve_loss_weight(key: str, base_weights: dict) -> float:
    """Weight of a stage-decorated key: 'dn_loss_bbox_3' -> base_weights['loss_bbox']. A key present in
    ``base_weights`` itself wins, so any single stage can be re-weighted explicitly."""
    if key in base_weights:
        return base_weights[key]
    base = re.sub(r"_\d+$", "", re.sub(r"^(enc_|dn_)", "", key))
    if base not in base_weights:
        raise KeyError(f"no weight for loss {key!r} (base key {base!r}); weights given: {sorted(base_weights)}")
    return base_weights[base]


def expand_weight_dict(base_weights: dict, num_decoder_layers: int, with_enc: bool = True,
                       with_dn: bool = True) -> dict:
    """Every key the criterion can emit for ``num_decoder_layers`` layers, with its weight."""
    out = {}
    bases = [k for k in base_weights if re.fullmatch(r"loss_[a-z]+", k)]
    for base in bases:
        keys = [base] + [f"{base}_{i}" for i in range(num_decoder_layers - 1)]
        if with_enc:
            keys.append(f"enc_{base}")
        if with_dn:
            keys += [f"dn_{base}"] + [f"dn_{base}_{i}" for i in range(num_decoder_layers - 1)]
        out.update({k: resolve_loss_weight(k, base_weights) for k in keys})
    out.update(base_weights)
    return out


class SetCriterion(nn.Module):
    """Losses of ARS-DETR (``box_loss='giou_hbb'``) and plain Rotated D-DETR (``box_loss='rotated_iou'``).

    Args:
        num_classes: C of ``pred_logits`` (sigmoid, no background channel).
        matcher: ``HungarianMatcher``.
        angle_coder: coder that encodes target angles to the (N, A) targets of the angle loss.
        weight_dict: base weights {'loss_cls', 'loss_bbox', 'loss_iou', 'loss_angle'} (2, 2, 5, 2 released);
            stage keys get the weight of their base key unless given explicitly.
        aspect_ratio_weighting: angle-loss weight 2r/(r+1) per positive (ARW).
        box_loss: 'giou_hbb' (L1 + horizontal GIoU + angle BCE) or 'rotated_iou' (5-dim L1 + -log rotated IoU).
        num_decoder_layers: if given, ``weight_dict`` is expanded to every stage key up front; otherwise
            keys are added the first time they are produced.
    Attributes:
        weight_dict: key -> weight for every loss key; total = sum(weight_dict[k] * losses[k]).
        last_indices: Hungarian matches of the last decoder layer of the latest call, B (pred_idx, gt_idx).
    """

    def __init__(self, num_classes: int, matcher: HungarianMatcher, angle_coder: nn.Module,
                 weight_dict: dict | None = None, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 aspect_ratio_weighting: bool = True, box_loss: str = "giou_hbb",
                 num_decoder_layers: int | None = None):
        super().__init__()
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"unknown box_loss {box_loss!r}; expected one of {BOX_LOSSES}")
        if box_loss == "giou_hbb" and angle_coder.num_bins < 2:
            raise ValueError("box_loss='giou_hbb' classifies the angle: it needs a CSL / AR-CSL coder, "
                             "use box_loss='rotated_iou' with the regression coder")
        self.num_classes = num_classes
        self.matcher = matcher
        self.angle_coder = angle_coder
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.aspect_ratio_weighting = aspect_ratio_weighting
        self.box_loss = box_loss
        self.losses = ["labels", "boxes", "angles"] if box_loss == "giou_hbb" else ["labels", "rotated_boxes"]
        base = dict(DEFAULT_WEIGHTS if weight_dict is None else weight_dict)
        if box_loss == "rotated_iou":
            base.pop("loss_angle", None)
        self.base_weight_dict = base
        self.weight_dict = expand_weight_dict(base, num_decoder_layers) if num_decoder_layers else dict(base)
        self.last_indices: list[tuple[Tensor, Tensor]] | None = None

    # ------------------------------------------------------------------ losses of one stage
    def loss_labels(self, outputs: dict, targets: list[dict], indices, num_pos: float) -> dict:
        logits = outputs["pred_logits"].float()  # losses in fp32 under autocast, like mmdet force_fp32
        batch_idx, src_idx = _src_permutation_idx(indices)
        target_classes = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
        onehot = torch.zeros_like(logits)
        onehot[batch_idx, src_idx, target_classes] = 1.0
        loss = sigmoid_focal_loss(logits, onehot, self.focal_alpha, self.focal_gamma).sum() / num_pos
        return {"loss_cls": loss}

    def loss_boxes(self, outputs: dict, targets: list[dict], indices, num_pos: float) -> dict:
        idx = _src_permutation_idx(indices)
        src = outputs["pred_boxes"][idx].float()
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(src)
        loss_bbox = F.l1_loss(src, tgt, reduction="none").sum() / num_pos
        giou = elementwise_generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))
        return {"loss_bbox": loss_bbox, "loss_iou": (1 - giou).sum() / num_pos}

    def loss_angles(self, outputs: dict, targets: list[dict], indices, num_pos: float) -> dict:
        idx = _src_permutation_idx(indices)
        src = outputs["pred_angle_logits"][idx].float()  # (N_pos, A)
        tgt = torch.cat([t["angle_targets"][j] for t, (_, j) in zip(targets, indices)]).to(src)
        bce = F.binary_cross_entropy_with_logits(src, tgt, reduction="none").sum(-1)  # (N_pos,)
        if self.aspect_ratio_weighting:
            ratios = torch.cat([t["aspect_ratios"][j] for t, (_, j) in zip(targets, indices)]).to(src)
            bce = bce * aspect_ratio_weight(ratios)
        return {"loss_angle": bce.sum() / (num_pos * src.shape[-1])}

    def loss_rotated_boxes(self, outputs: dict, targets: list[dict], indices, num_pos: float) -> dict:
        idx = _src_permutation_idx(indices)
        src = torch.cat([outputs["pred_boxes"][idx], outputs["pred_angles"][idx][:, None]], dim=-1).float()
        tgt = torch.cat([torch.cat([t["boxes"][j], t["angles"][j][:, None]], dim=-1)
                         for t, (_, j) in zip(targets, indices)]).to(src)
        loss_bbox = F.l1_loss(src, tgt, reduction="none").sum() / num_pos
        return {"loss_bbox": loss_bbox, "loss_iou": rotated_iou_loss(src, tgt).sum() / num_pos}

    loss_map = {"labels": loss_labels, "boxes": loss_boxes, "angles": loss_angles,
                "rotated_boxes": loss_rotated_boxes}

    def get_loss(self, loss: str, outputs: dict, targets: list[dict], indices, num_pos: float) -> dict:
        assert loss in self.loss_map, f"do you really want to compute {loss} loss?"
        return self.loss_map[loss](self, outputs, targets, indices, num_pos)

    def stage_losses(self, outputs: dict, targets: list[dict], indices, num_pos: float,
                     prefix: str = "", suffix: str = "") -> dict:
        """All losses of one prediction stage, keys decorated as ``{prefix}{key}{suffix}``."""
        losses = {}
        for loss in self.losses:
            for key, value in self.get_loss(loss, outputs, targets, indices, num_pos).items():
                losses[f"{prefix}{key}{suffix}"] = value
        return losses

    # ------------------------------------------------------------------ full forward
    def prepare_targets(self, targets: list[dict]) -> list[dict]:
        """Shallow copies with 'aspect_ratios' (n,) and, for CSL / AR-CSL, 'angle_targets' (n, A) cached,
        so that the 13 matched stages (6 decoder, encoder, 6 DN) encode each target once."""
        prepared = []
        for i, t in enumerate(targets):
            for key in ("labels", "boxes", "angles"):
                if key not in t:
                    raise KeyError(f"target {i} has no {key!r} (keys: {sorted(t)})")
            labels = t["labels"]
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise ValueError(f"target {i}: labels must be in [0, {self.num_classes}), "
                                 f"got min {int(labels.min())} max {int(labels.max())}")
            t = dict(t)
            t["aspect_ratios"] = target_aspect_ratios(t)
            if self.angle_coder.num_bins > 1 and "angle_targets" not in t:
                t["angle_targets"] = self.angle_coder.encode(t["angles"], t["aspect_ratios"])
            prepared.append(t)
        return prepared

    def forward(self, outputs: dict, targets: list[dict], return_indices: bool = False):
        """
        Args:
            outputs: model outputs per docs/DETECTOR_CONTRACT.md ('pred_*', optional 'aux_outputs',
                'enc_outputs', 'dn_outputs').
            targets: B dicts 'labels' (n,), 'boxes' (n, 4) normalised cxcywh, 'angles' (n,) le90, optional
                'aspect_ratios' (n,) pixel-space ratios.
            return_indices: also return the matches.
        Returns:
            losses dict of scalars (unweighted; see ``weight_dict``), or (losses, indices) where indices is
            {'last': B (pred_idx, gt_idx), 'aux': list over aux layers, 'enc': B pairs or None,
             'dn': B (dn_slot_idx, gt_idx) of the DN positives or None}.
        """
        if outputs["pred_logits"].shape[-1] != self.num_classes:
            raise ValueError(f"pred_logits has {outputs['pred_logits'].shape[-1]} classes, "
                             f"criterion expects {self.num_classes}")
        targets = self.prepare_targets(targets)
        device = outputs["pred_logits"].device

        last = {k: outputs[k] for k in PRED_KEYS if k in outputs}
        indices = self.matcher(last, targets)
        losses = self.stage_losses(last, targets, indices, num_matched(indices, device))

        aux_indices = []
        for i, aux in enumerate(outputs.get("aux_outputs") or []):
            aux_idx = self.matcher(aux, targets)
            aux_indices.append(aux_idx)
            losses.update(self.stage_losses(aux, targets, aux_idx, num_matched(aux_idx, device), suffix=f"_{i}"))

        enc_indices = None
        if outputs.get("enc_outputs") is not None:
            enc = outputs["enc_outputs"]
            # Class-agnostic proposals: every ground truth is class 0 (released binary_labels_list).
            enc_targets = [dict(t, labels=torch.zeros_like(t["labels"])) for t in targets]
            enc_indices = self.matcher(enc, enc_targets)
            losses.update(self.stage_losses(enc, enc_targets, enc_indices, num_matched(enc_indices, device),
                                            prefix="enc_"))

        dn_indices = None
        if outputs.get("dn_outputs") is not None:
            dn = outputs["dn_outputs"]
            dn_indices = dn_positive_indices(targets, dn["dn_meta"], device)
            num_pos_dn = average_num_pos(sum(len(p) for p, _ in dn_indices), device)
            num_layers = dn["pred_logits"].shape[0]
            for layer in range(num_layers):
                layer_out = {k: dn[k][layer] for k in PRED_KEYS if k in dn}
                suffix = "" if layer == num_layers - 1 else f"_{layer}"
                losses.update(self.stage_losses(layer_out, targets, dn_indices, num_pos_dn,
                                                prefix="dn_", suffix=suffix))

        for key in losses:
            if key not in self.weight_dict:
                self.weight_dict[key] = resolve_loss_weight(key, self.base_weight_dict)
        self.last_indices = indices
        if return_indices:
            return losses, {"last": indices, "aux": aux_indices, "enc": enc_indices, "dn": dn_indices}
        return losses

    def total_loss(self, losses: dict) -> Tensor:
        """sum(weight_dict[k] * losses[k]) over the loss keys."""
        return sum(self.weight_dict[k] * v for k, v in losses.items())


def dn_positive_indices(targets: list[dict], dn_meta: dict, device) -> list[tuple[Tensor, Tensor]]:
    """Positive DN slots of each image: slot g*2M + i is paired with ground truth i, for every group g."""
    groups, max_gts = dn_meta["num_groups"], dn_meta["max_gts"]
    out = []
    for t in targets:
        n = len(t["labels"])
        gt = torch.arange(n, dtype=torch.int64, device=device)
        starts = torch.arange(groups, dtype=torch.int64, device=device) * 2 * max_gts
        out.append(((starts[:, None] + gt[None, :]).reshape(-1), gt.repeat(groups)))
    return out


def _src_permutation_idx(indices) -> tuple[Tensor, Tensor]:
    batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    src_idx = torch.cat([src for src, _ in indices])
    return batch_idx, src_idx


def build_criterion(num_classes: int, angle_coder: nn.Module, aspect_ratio_weighting: bool = True,
                    box_loss: str = "giou_hbb", weight_dict: dict | None = None,
                    num_decoder_layers: int | None = None, released_l1_cost_quirk: bool = False) -> SetCriterion:
    """Matcher + criterion with the released weights (the head asserts loss weights == cost weights).

    Variants (SPEC section 3, Table 9): ARS-DETR = AR-CSL coder + aspect_ratio_weighting;
    AR-CSL / CSL D-DETR = AR-CSL / CSL coder without weighting; Rotated D-DETR = regression coder +
    box_loss='rotated_iou'.
    """
    weights = dict(DEFAULT_WEIGHTS if weight_dict is None else weight_dict)
    matcher = build_matcher(angle_coder, aspect_ratio_weighting=aspect_ratio_weighting, box_cost=box_loss,
                            cost_class=weights["loss_cls"], cost_bbox=weights["loss_bbox"],
                            cost_giou=weights["loss_iou"], cost_angle=weights.get("loss_angle", 0.0),
                            released_l1_cost_quirk=released_l1_cost_quirk)
    return SetCriterion(num_classes, matcher, angle_coder, weights, aspect_ratio_weighting=aspect_ratio_weighting,
                        box_loss=box_loss, num_decoder_layers=num_decoder_layers)
