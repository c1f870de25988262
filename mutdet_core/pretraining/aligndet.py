"""AlignDet (box-domain contrastive pre-training with an EMA target) on ARS-DETR (reference
baselines_and_sam.md section 3, DETR variant 3.5).

- **Two views.** View 1 is the batch as the data pipeline made it (the online view). View 2 is made from
  it inside the model, box-consistently (same boxes, same order): per image, horizontal and vertical flips
  of the valid region (each with ``view_flip_prob``), then brightness and contrast jitter of strength
  ``view_color_jitter`` on the normalised pixels. (AlignDet runs two independent mmdet pipelines with scale
  jitter and RandAugment-style colour ops; here the second view is derived on the device, without scale
  change, so the data loader stays the same for every method.)
- **Online / target.** ``detector`` + ``projector`` (Linear(D, H) - ReLU - Linear(H, P), 256 / 256) are
  trained on view 1; ``target_detector`` + ``target_projector`` are their EMA (no gradient), run on view 2
  in eval mode without DN. ``on_iteration(it, total)`` (the engine calls it after every optimizer step)
  sets the momentum m = 1 - (1 - m0) * (cos(pi * it / total) + 1) / 2 (m0 = 0.996 -> 1, mmselfsup's
  ``MomentumUpdateHook``) and updates target = m * target + (1 - m) * online; the content queries
  (``query_embedding``) are copied, not averaged, so both views share them (as AlignDet does for DETR).
- **Box-level contrast** (``loss_contrastive``, temperature 0.5, weight 1): the box feature of a query is
  the projector output of its decoder-layer output. In every decoder layer, queries of each view are
  Hungarian-matched to the pseudo-boxes (the detection matching); the online query matched to box k is
  pulled towards the target-view queries matched to box k; negatives are all other queries of both views,
  matched or not, detached, over the concatenation of all decoder layers (AlignDet's ``ContrastiveLoss``:
  per box, CE over [q.k, q.neg] / T for every (query, key) pair, averaged per box, then over boxes).
  A box with no target-view query (Q < boxes) has no key and is skipped.
- **Box regression on proposals**: the full ARS-DETR detection loss on view 1 (focal over the 256
  pseudo-classes, L1, GIoU, angle; every layer, encoder proposals, DN), AlignDet's category-level branch.

Adaptation, on purpose: AlignDet matches a second time with per-box instance ids as labels to pair
queries; here the detection matching (pseudo-class + box + angle costs) already pairs every matched query
with a box, so it is used for both views.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.box_ops import wrap_angle_le90
from ..models.criterion import PRED_KEYS, SetCriterion
from ..models.detector import ARSDETR


def augment_view(images: Tensor, padding_mask: Tensor, targets: list[dict], flip_prob: float = 0.5,
                 color_jitter: float = 0.4) -> tuple[Tensor, list[dict]]:
    """Box-consistent second view (module docstring): (B, 3, H, W) images, (B, H, W) mask, targets ->
    (images, targets). Flips act on each image's valid top-left block so the padding stays bottom / right."""
    images = images.clone()
    out_targets = []
    _, _, height, width = images.shape
    for b, target in enumerate(targets):
        h = int((~padding_mask[b, :, 0]).sum())
        w = int((~padding_mask[b, 0, :]).sum())
        target = dict(target)
        boxes, angles = target["boxes"].clone(), target["angles"].clone()
        for dim, size, full, coord in ((-1, w, width, 0), (-2, h, height, 1)):
            if torch.rand(()) < flip_prob:
                images[b, :, :h, :w] = images[b, :, :h, :w].flip(dim)
                boxes[:, coord] = size / full - boxes[:, coord]
                angles = wrap_angle_le90(-angles)
        if color_jitter > 0:
            region = images[b, :, :h, :w]
            brightness = (torch.rand((), device=images.device) * 2 - 1) * color_jitter
            contrast = 1 + (torch.rand((), device=images.device) * 2 - 1) * color_jitter
            mean = region.mean()
            images[b, :, :h, :w] = (region - mean) * contrast + mean + brightness
        target["boxes"], target["angles"] = boxes, angles
        out_targets.append(target)
    return images, out_targets


def box_contrastive_loss(online: Tensor, online_ids: Tensor, target: Tensor, target_ids: Tensor,
                         temperature: float = 0.5) -> Tensor:
    """AlignDet's ContrastiveLoss over box features (module docstring).

    Args:
        online: (N, P) online box features (with gradient); online_ids (N,) box id, -1 = unmatched.
        target: (M, P) target-view box features; target_ids (M,).
    Returns:
        scalar: mean over boxes of the mean over that box's (query, key) pairs of
        -log(exp(q.k/T) / (exp(q.k/T) + sum_neg exp(q.n/T))); negatives = every online or target feature
        of another id (or unmatched), detached.
    """
    q_all = F.normalize(online.float(), dim=-1)
    k_all = F.normalize(target.float(), dim=-1)
    has_key = torch.isin(online_ids, target_ids[target_ids >= 0])
    rows = (online_ids >= 0) & has_key
    if not rows.any():
        return online.sum() * 0.0
    q, q_ids = q_all[rows], online_ids[rows]
    negatives = torch.cat([q_all, k_all]).detach()
    negative_ids = torch.cat([online_ids, target_ids])
    neg_logits = (q @ negatives.T / temperature).masked_fill(q_ids[:, None] == negative_ids[None, :], -math.inf)
    neg_lse = torch.logsumexp(neg_logits, dim=1)  # -inf when there is no negative
    pos_logits = q @ k_all.T / temperature  # (n, M)
    pairs = q_ids[:, None] == target_ids[None, :]
    pair_loss = torch.logaddexp(pos_logits, neg_lse[:, None]) - pos_logits
    ids, compact = torch.unique(q_ids, return_inverse=True)
    num_pairs = torch.zeros(len(ids), device=q.device).index_add_(0, compact, pairs.sum(1).float())
    per_row = (pair_loss * pairs).sum(1) / num_pairs[compact]
    return per_row.sum() / len(ids)


class AlignDet(nn.Module):
    """Online detector + projector, EMA target copies, in-model second view (module docstring).

    Output: the online detector's dict on view 1 plus ``projections`` (L, B, Q, P) and ``target_view``:
    {``projections`` (L, B, Q, P), ``layers``: L dicts of ``pred_*`` (B, Q, ...) of the target detector,
    ``targets``: view-2 targets}.
    """

    find_unused_parameters = False

    def __init__(self, detector: ARSDETR, base_momentum: float = 0.996, projector_hidden_dim: int | None = 256,
                 projector_dim: int = 256, view_flip_prob: float = 0.5, view_color_jitter: float = 0.4):
        super().__init__()
        if not 0.0 <= base_momentum <= 1.0:
            raise ValueError(f"base_momentum must be in [0, 1], got {base_momentum}")
        d_model = detector.encoder.level_embed.shape[1]
        hidden = projector_hidden_dim or d_model
        self.detector = detector
        self.projector = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, projector_dim))
        self.target_detector = copy.deepcopy(detector)
        self.target_projector = copy.deepcopy(self.projector)
        for p in (*self.target_detector.parameters(), *self.target_projector.parameters()):
            p.requires_grad_(False)
        self.base_momentum = base_momentum
        self.momentum = base_momentum
        self.view_flip_prob, self.view_color_jitter = view_flip_prob, view_color_jitter

    def train(self, mode: bool = True) -> "AlignDet":
        super().train(mode)
        self.target_detector.eval()  # the EMA target is a fixed teacher within a step: no dropout, no DN
        self.target_projector.eval()
        return self

    def forward(self, images: Tensor, padding_mask: Tensor | None = None, targets: list[dict] | None = None) -> dict:
        batch, _, height, width = images.shape
        if padding_mask is None:
            padding_mask = torch.zeros(batch, height, width, dtype=torch.bool, device=images.device)
        if targets is None:
            raise ValueError("AlignDet pre-training needs the pseudo-box targets")
        out = self.detector(images, padding_mask, targets)
        out["projections"] = self.projector(out["hs"])
        view_images, view_targets = augment_view(images, padding_mask, targets, self.view_flip_prob,
                                                 self.view_color_jitter)
        with torch.no_grad():
            target_det = self.target_detector
            t_out = target_det.detect_from_memory(target_det.encode(view_images, padding_mask), None)
            layers = [*t_out["aux_outputs"], {k: t_out[k] for k in PRED_KEYS}]
            out["target_view"] = {"projections": self.target_projector(t_out["hs"]), "layers": layers,
                                  "targets": view_targets}
        return out

    @torch.no_grad()
    def on_iteration(self, iteration: int, total_iterations: int) -> None:
        """After optimizer step ``iteration`` (1-based) of ``total_iterations``: momentum schedule + EMA update."""
        progress = min(max(iteration / max(total_iterations, 1), 0.0), 1.0)
        self.momentum = 1 - (1 - self.base_momentum) * (math.cos(math.pi * progress) + 1) / 2
        m = self.momentum
        for online, target in ((self.detector, self.target_detector), (self.projector, self.target_projector)):
            for (name, p_o), p_t in zip(online.named_parameters(), target.parameters()):
                if name.startswith("query_embedding."):
                    p_t.copy_(p_o)  # shared content queries for both views
                else:
                    p_t.mul_(m).add_(p_o.detach(), alpha=1 - m)
            for b_o, b_t in zip(online.buffers(), target.buffers()):
                b_t.copy_(b_o)


def _instance_ids(indices: list[tuple[Tensor, Tensor]], counts: list[int], num_queries: int, device) -> Tensor:
    """(B * Q,) box id of every query (offset per image so ids are unique in the batch), -1 = unmatched."""
    ids = torch.full((len(indices), num_queries), -1, dtype=torch.int64, device=device)
    offset = 0
    for b, ((src, gt), n) in enumerate(zip(indices, counts)):
        ids[b, src] = gt + offset
        offset += n
    return ids.reshape(-1)


class AlignDetCriterion(nn.Module):
    """Detection loss on view 1 + ``loss_contrastive`` (module docstring)."""

    def __init__(self, detection: SetCriterion, temperature: float = 0.5, contrastive_weight: float = 1.0):
        super().__init__()
        self.detection = detection
        self.temperature = temperature
        self.weight_dict = dict(detection.weight_dict)
        self.weight_dict["loss_contrastive"] = contrastive_weight

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        losses, indices = self.detection(outputs, targets, return_indices=True)
        view = outputs["target_view"]
        counts = [len(t["labels"]) for t in targets]
        online_indices = [*indices["aux"], indices["last"]]
        num_queries, device = outputs["pred_logits"].shape[1], outputs["pred_logits"].device
        dim = outputs["projections"].shape[-1]
        online_ids, target_ids = [], []
        for layer, (online_idx, t_layer) in enumerate(zip(online_indices, view["layers"])):
            target_idx = self.detection.matcher(t_layer, view["targets"])
            online_ids.append(_instance_ids(online_idx, counts, num_queries, device))
            target_ids.append(_instance_ids(target_idx, counts, num_queries, device))
        losses["loss_contrastive"] = box_contrastive_loss(
            outputs["projections"].reshape(-1, dim), torch.cat(online_ids),
            view["projections"].reshape(-1, dim), torch.cat(target_ids), self.temperature)
        for key in losses:
            if key not in self.weight_dict:
                self.weight_dict[key] = self.detection.weight_dict[key]
        return losses


def build_aligndet(detector: ARSDETR, detection: SetCriterion, cfg: dict) -> tuple[AlignDet, AlignDetCriterion]:
    """Keys: ``temperature`` (0.5), ``contrastive_weight`` (1.0), ``base_momentum`` (0.996),
    ``projector_hidden_dim`` (256; null = D), ``projector_dim`` (256), ``view_flip_prob`` (0.5),
    ``view_color_jitter`` (0.4)."""
    model = AlignDet(detector, float(cfg.get("base_momentum", 0.996)), cfg.get("projector_hidden_dim", 256),
                     int(cfg.get("projector_dim", 256)), float(cfg.get("view_flip_prob", 0.5)),
                     float(cfg.get("view_color_jitter", 0.4)))
    criterion = AlignDetCriterion(detection, float(cfg.get("temperature", 0.5)),
                                  float(cfg.get("contrastive_weight", 1.0)))
    return model, criterion
