"""AlignDet (box-domain contrastive pre-training with an EMA target) on ARS-DETR (reference
baselines_and_sam.md section 3, DETR variant 3.5; liming-ai/AlignDet).

- **Two views** (``views``). ``two_views`` (default, as released): the pseudo-boxes of each image are cut to
  the first ``max_boxes`` (default half the queries: ``SelectTopKProposals(topk=50)`` for DETR's 100 queries
  in ``configs/selfsup/detr.py``, topk=150 for Deformable DETR's 300 in the removed
  ``configs/selfsup/deformable_detr.py``, "smaller than the number of queries"; null keeps all), each box
  gets an id unique in the batch (``instance_ids``), and two views are made independently from the
  loader's batch, each with scale jitter, a horizontal flip and one RandAugment-style colour operation (``aligndet_views.py``: ``view_scales``, ``view_flip_prob``,
  ``view_color_ops``); both views carry the same boxes with the same ids, moved with their pixels.
  ``flip_jitter`` (this code's earlier adaptation): view 1 is the loader's batch, view 2 is derived from it
  with horizontal and vertical flips (each ``view_flip_prob``) and brightness / contrast jitter
  (``view_color_jitter``), ``augment_view``.
- **Online / target.** ``detector`` + ``projector`` (Linear(D, H) - ReLU - Linear(H, P), 256 / 256) are
  trained on view 1; ``target_detector`` + ``target_projector`` are their EMA (no gradient), run on view 2
  in eval mode without DN. ``on_iteration(it, total)`` (the engine calls it after every optimizer step)
  sets the momentum m = 1 - (1 - m0) * (cos(pi * it / total) + 1) / 2 (m0 = 0.996 -> 1, mmselfsup's
  ``MomentumUpdateHook``) and updates target = m * target + (1 - m) * online; the content queries
  (``query_embedding``) are copied, not averaged, so both views share them (as AlignDet does for DETR).
- **Pairs** (``pairing``). ``box_identity`` (default, as released: ``SelfSupDETRHead._get_target_single``'s
  ``obj_assigner``): in every decoder layer of each view, queries are Hungarian-matched a second time to the
  boxes with the same costs as the detection matching but with the box ids as labels (the class cost reads
  the logit column ``id mod C``, as AlignDet reads column ``id`` of its 256-way classifier); the online query
  matched to box k is paired with the target-view queries matched to box k. ``detection_matching``: the
  detection matching (pseudo-class labels) of each view pairs them.
- **Box-level contrast** (``loss_contrastive``, temperature 0.5, weight 1): the box feature of a query is
  the projector output of its decoder-layer output; per box, CE over [q.k, q.neg] / T for every (query, key)
  pair, averaged per box, then over boxes; negatives are all queries of both views with another id, matched
  or not, detached, over the concatenation of all decoder layers (AlignDet's ``ContrastiveLoss`` and
  ``obj_loss``). A box with an online query but no target-view query (Q < boxes) uses its online queries as
  keys (``missing_key: query``, as released) or is skipped (``skip``).
- **Box regression on proposals**: the full ARS-DETR detection loss on view 1 (focal over the 256
  pseudo-classes, L1, GIoU, angle; every layer, encoder proposals, DN), AlignDet's category-level branch.
- **Optimiser** (``optimizer: released``): AdamW lr 2e-4 for 64 images a step, scaled linearly to the run's
  total batch (``auto_scale_lr``), weight decay 1e-4, gradient clipping 0.1, no warm-up
  (``configs/selfsup/detr.py``), over the shared ``pretrain.train`` (``method_config.py``).
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
from .aligndet_views import RELEASED_SCALES, box_instance_ids, keep_first_boxes, make_view
from .method_config import ALIGNDET_PAIRINGS, ALIGNDET_VIEWS, COLOR_OPS


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
                         temperature: float = 0.5, missing_key: str = "skip") -> Tensor:
    """AlignDet's ContrastiveLoss over box features (module docstring).

    Args:
        online: (N, P) online box features (with gradient); online_ids (N,) box id, -1 = unmatched.
        target: (M, P) target-view box features; target_ids (M,).
        missing_key: a box with online queries but no target-view query: 'skip' it, or use its online
            queries as its keys ('query', AlignDet's ``key = ... if key_inds.sum() > 0 else query``).
    Returns:
        scalar: mean over boxes of the mean over that box's (query, key) pairs of
        -log(exp(q.k/T) / (exp(q.k/T) + sum_neg exp(q.n/T))); negatives = every online or target feature
        of another id (or unmatched), detached.
    """
    if missing_key not in ("skip", "query"):
        raise ValueError(f"missing_key must be 'skip' or 'query', got {missing_key!r}")
    q_all = F.normalize(online.float(), dim=-1)
    k_all = F.normalize(target.float(), dim=-1)
    has_key = torch.isin(online_ids, target_ids[target_ids >= 0])
    rows = (online_ids >= 0) & (has_key if missing_key == "skip" else torch.ones_like(has_key))
    if not rows.any():
        return online.sum() * 0.0
    q, q_ids = q_all[rows], online_ids[rows]
    negatives = torch.cat([q_all, k_all]).detach()
    negative_ids = torch.cat([online_ids, target_ids])
    neg_logits = (q @ negatives.T / temperature).masked_fill(q_ids[:, None] == negative_ids[None, :], -math.inf)
    neg_lse = torch.logsumexp(neg_logits, dim=1)  # -inf when there is no negative
    keys, key_ids = k_all, target_ids
    if missing_key == "query":  # boxes without a target-view key pair their online queries with each other
        lonely = rows & ~has_key
        keys, key_ids = torch.cat([k_all, q_all[lonely]]), torch.cat([target_ids, online_ids[lonely]])
    pos_logits = q @ keys.T / temperature  # (n, M')
    pairs = q_ids[:, None] == key_ids[None, :]
    pair_loss = torch.logaddexp(pos_logits, neg_lse[:, None]) - pos_logits
    ids, compact = torch.unique(q_ids, return_inverse=True)
    num_pairs = torch.zeros(len(ids), device=q.device).index_add_(0, compact, pairs.sum(1).float())
    per_row = (pair_loss * pairs).sum(1) / num_pairs[compact]
    return per_row.sum() / len(ids)


class AlignDet(nn.Module):
    """Online detector + projector, EMA target copies, two views (module docstring).

    Output: the online detector's dict on view 1 plus ``projections`` (L, B, Q, P), ``online_targets``
    (view-1 targets, the ones the detection loss uses) and ``target_view``: {``projections`` (L, B, Q, P),
    ``layers``: L dicts of ``pred_*`` (B, Q, ...) of the target detector, ``targets``: view-2 targets}.
    In ``two_views`` mode every target of both views carries ``instance_ids`` (n,) int64.
    """

    find_unused_parameters = False

    def __init__(self, detector: ARSDETR, base_momentum: float = 0.996, projector_hidden_dim: int | None = 256,
                 projector_dim: int = 256, view_flip_prob: float = 0.5, view_color_jitter: float = 0.4,
                 views: str = "two_views", view_scales=RELEASED_SCALES, view_color_ops=COLOR_OPS,
                 max_boxes: int | None = None):
        super().__init__()
        if not 0.0 <= base_momentum <= 1.0:
            raise ValueError(f"base_momentum must be in [0, 1], got {base_momentum}")
        if views not in ALIGNDET_VIEWS:
            raise ValueError(f"views must be one of {list(ALIGNDET_VIEWS)}, got {views!r}")
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
        self.views, self.max_boxes = views, max_boxes
        self.view_scales, self.view_color_ops = tuple(view_scales), tuple(view_color_ops)

    def train(self, mode: bool = True) -> "AlignDet":
        super().train(mode)
        self.target_detector.eval()  # the EMA target is a fixed teacher within a step: no dropout, no DN
        self.target_projector.eval()
        return self

    def make_views(self, images: Tensor, padding_mask: Tensor, targets: list[dict]):
        """((view-1 images, mask, targets), (view-2 images, mask, targets)) of a batch (module docstring)."""
        if self.views == "flip_jitter":
            view_images, view_targets = augment_view(images, padding_mask, targets, self.view_flip_prob,
                                                     self.view_color_jitter)
            return (images, padding_mask, targets), (view_images, padding_mask, view_targets)
        targets = [keep_first_boxes(t, self.max_boxes) for t in targets]
        targets = [dict(t, instance_ids=ids) for t, ids in zip(targets, box_instance_ids(targets))]
        return tuple(make_view(images, padding_mask, targets, self.view_scales, self.view_flip_prob,
                               self.view_color_ops) for _ in range(2))

    def forward(self, images: Tensor, padding_mask: Tensor | None = None, targets: list[dict] | None = None) -> dict:
        batch, _, height, width = images.shape
        if padding_mask is None:
            padding_mask = torch.zeros(batch, height, width, dtype=torch.bool, device=images.device)
        if targets is None:
            raise ValueError("AlignDet pre-training needs the pseudo-box targets")
        (images1, mask1, targets1), (images2, mask2, targets2) = self.make_views(images, padding_mask, targets)
        out = self.detector(images1, mask1, targets1)
        out["projections"] = self.projector(out["hs"])
        out["online_targets"] = targets1
        with torch.no_grad():
            target_det = self.target_detector
            t_out = target_det.detect_from_memory(target_det.encode(images2, mask2), None)
            layers = [*t_out["aux_outputs"], {k: t_out[k] for k in PRED_KEYS}]
            out["target_view"] = {"projections": self.target_projector(t_out["hs"]), "layers": layers,
                                  "targets": targets2}
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


def identity_targets(targets: list[dict], num_classes: int) -> list[dict]:
    """Targets for AlignDet's object-level matching: the box ids (``instance_ids``, or the batch-offset
    position) as labels, modulo the classifier width so the class cost has a column to read."""
    ids = box_instance_ids(targets)
    return [dict(t, labels=t.get("instance_ids", i) % num_classes) for t, i in zip(targets, ids)]


class AlignDetCriterion(nn.Module):
    """Detection loss on view 1 + ``loss_contrastive`` (module docstring)."""

    def __init__(self, detection: SetCriterion, temperature: float = 0.5, contrastive_weight: float = 1.0,
                 pairing: str = "box_identity", missing_key: str = "query"):
        super().__init__()
        if pairing not in ALIGNDET_PAIRINGS:
            raise ValueError(f"pairing must be one of {list(ALIGNDET_PAIRINGS)}, got {pairing!r}")
        self.detection = detection
        self.temperature = temperature
        self.pairing, self.missing_key = pairing, missing_key
        self.weight_dict = dict(detection.weight_dict)
        self.weight_dict["loss_contrastive"] = contrastive_weight

    def pair_indices(self, layers: list[dict], targets: list[dict]) -> list[list[tuple[Tensor, Tensor]]]:
        """Per decoder layer, the (query, box) matches that pair queries across views (module docstring)."""
        if self.pairing == "box_identity":
            targets = identity_targets(targets, layers[-1]["pred_logits"].shape[-1])
        return [self.detection.matcher(layer, targets) for layer in layers]

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        targets = outputs.get("online_targets", targets)  # view 1: cut to max_boxes, moved by the view
        losses, indices = self.detection(outputs, targets, return_indices=True)
        view = outputs["target_view"]
        counts = [len(t["labels"]) for t in targets]
        if self.pairing == "detection_matching":
            online_indices = [*indices["aux"], indices["last"]]
        else:
            online_layers = [*outputs["aux_outputs"], {k: outputs[k] for k in PRED_KEYS if k in outputs}]
            online_indices = self.pair_indices(online_layers, targets)
        target_indices = self.pair_indices(view["layers"], view["targets"])
        num_queries, device = outputs["pred_logits"].shape[1], outputs["pred_logits"].device
        dim = outputs["projections"].shape[-1]
        online_ids = [_instance_ids(idx, counts, num_queries, device) for idx in online_indices]
        target_ids = [_instance_ids(idx, counts, num_queries, device) for idx in target_indices]
        losses["loss_contrastive"] = box_contrastive_loss(
            outputs["projections"].reshape(-1, dim), torch.cat(online_ids),
            view["projections"].reshape(-1, dim), torch.cat(target_ids), self.temperature, self.missing_key)
        for key in losses:
            if key not in self.weight_dict:
                self.weight_dict[key] = self.detection.weight_dict[key]
        return losses


def build_aligndet(detector: ARSDETR, detection: SetCriterion, cfg: dict) -> tuple[AlignDet, AlignDetCriterion]:
    """Keys (build.py docstring): ``temperature`` (0.5), ``contrastive_weight`` (1.0), ``base_momentum``
    (0.996), ``projector_hidden_dim`` (256; null = D), ``projector_dim`` (256), ``views`` ('two_views'),
    ``view_scales`` (0.8 ... 1.0), ``view_flip_prob`` (0.5), ``view_color_ops`` (all nine),
    ``view_color_jitter`` (0.4, flip_jitter only), ``max_boxes`` (Q / 2), ``pairing`` ('box_identity'),
    ``missing_key`` ('query'); ``optimizer`` is read by the run (``method_config.method_train_overrides``).
    ``max_boxes`` absent: half the queries, as both released configs (50 of DETR's 100 queries in
    configs/selfsup/detr.py, 150 of Deformable DETR's 300 in configs/selfsup/deformable_detr.py before
    commit 601a549 removed it); null keeps every box."""
    max_boxes = cfg.get("max_boxes", max(1, detector.num_queries // 2))
    model = AlignDet(detector, float(cfg.get("base_momentum", 0.996)), cfg.get("projector_hidden_dim", 256),
                     int(cfg.get("projector_dim", 256)), float(cfg.get("view_flip_prob", 0.5)),
                     float(cfg.get("view_color_jitter", 0.4)), cfg.get("views", "two_views"),
                     [float(s) for s in cfg.get("view_scales", RELEASED_SCALES)],
                     list(cfg.get("view_color_ops", COLOR_OPS)), None if max_boxes is None else int(max_boxes))
    criterion = AlignDetCriterion(detection, float(cfg.get("temperature", 0.5)),
                                  float(cfg.get("contrastive_weight", 1.0)), cfg.get("pairing", "box_identity"),
                                  cfg.get("missing_key", "query"))
    return model, criterion
