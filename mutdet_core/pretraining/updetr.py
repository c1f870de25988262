"""UP-DETR (random query patch detection) on ARS-DETR (reference baselines_and_sam.md section 2).

Per image, ``num_patches`` (10) random patches: width ~ U_int[8, w - 8], height ~ U_int[8, h - 8] pixels of
the valid (unpadded) image, top-left corner uniform so the patch fits. Each patch is cropped from the input
image (bilinear RoIAlign to ``patch_size`` x ``patch_size``, 128 as UP-DETR's query transform) and passed
through the **frozen** detector backbone; its feature is the average-pooled last level (C5, 2048-d for
ResNet-50), computed without gradient. The detector then has to find the patches:

- targets: the patch boxes, axis-aligned (le90: w >= h, so a tall patch is (h, w) at -pi/2), label 0 of
  the 256 pseudo-classes (UP-DETR is class-agnostic; fine-tuning re-initialises the class heads anyway);
  ``aspect_ratios`` in pixels. The dataset's pseudo-labels are not used.
- query conditioning: ``patch_projection`` Linear(C5, D) (UP-DETR's ``patch2query``) of patch i is added
  to a contiguous group of the Q matching content queries (query j gets patch j * N // Q: UP-DETR's
  ``repeat_interleave`` for Q divisible by N); during training each query drops its patch feature with
  probability ``query_mask_ratio`` (0.1).
- losses: the full ARS-DETR detection loss on the patch boxes (+ DN on them) and the feature
  reconstruction ``loss_feature`` = sum over patches of ||normalize(feature_head(hs)) - normalize(f)||^2 /
  num_patches, with ``feature_head`` = MLP(D, D, C5) (UP-DETR's ``feature_align``), on the matched queries
  of every decoder layer (``loss_feature_{i}`` for layer i < L - 1; ``feature_loss_layers: last`` keeps the
  last only).

Adaptations to the two-stage ARS-DETR, on purpose: the patch feature is added to the content queries only.
In the Deformable port it was added to the full 2D query and also moved the reference points; ARS-DETR's
references and positional queries come from the encoder's top-K proposals, which stay as they are.
``group_attention_mask`` (off, as in the Deformable port) restores original UP-DETR's block-diagonal
self-attention mask between query groups. The patch features reach the matching queries through a
forward pre-hook on ``detector.decoder`` for the duration of the call (no change to the detector code).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from ..models.criterion import SetCriterion, average_num_pos
from ..models.detector import ARSDETR
from ..models.heads import MLP


def random_query_patches(padding_mask: Tensor, num_patches: int, min_pixels: int = 8,
                         generator: torch.Generator | None = None) -> list[Tensor]:
    """B tensors (num_patches, 4) of pixel xyxy patches inside each image's valid region.

    padding_mask: (B, H, W) bool, True on padding; the valid region is the top-left h x w block.
    """
    out = []
    for mask in padding_mask:
        w = int((~mask[0]).sum())
        h = int((~mask[:, 0]).sum())

        def draw(size: int) -> tuple[Tensor, Tensor]:
            low, high = min(min_pixels, size), max(min(min_pixels, size), size - min_pixels)
            extent = torch.randint(low, high + 1, (num_patches,), generator=generator)
            start = (torch.rand(num_patches, generator=generator) * (size - extent + 1)).floor().clamp(max=size - 1)
            return start, extent

        x, sw = draw(w)
        y, sh = draw(h)
        out.append(torch.stack([x, y, x + sw, y + sh], -1).float().to(padding_mask.device))
    return out


def patch_targets(patches: list[Tensor], height: int, width: int) -> list[dict]:
    """Detector targets of pixel xyxy patches in a padded (height, width) input (module docstring)."""
    targets = []
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    for xyxy in patches:
        w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
        tall = h > w
        cxcywh = torch.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                              torch.where(tall, h, w), torch.where(tall, w, h)], -1)
        boxes = cxcywh / scale.to(xyxy.device)
        angles = torch.where(tall, torch.full_like(w, -math.pi / 2), torch.zeros_like(w))
        targets.append({"labels": torch.zeros(len(xyxy), dtype=torch.int64, device=xyxy.device),
                        "boxes": boxes, "angles": angles,
                        "aspect_ratios": torch.maximum(w, h) / torch.minimum(w, h).clamp(min=1e-6)})
    return targets


def group_attention_mask(num_matching: int, num_patches: int, device) -> Tensor:
    """(Q, Q) bool, True = may not attend: queries of different patch groups cannot see each other."""
    group = torch.arange(num_matching, device=device) * num_patches // num_matching
    return group[:, None] != group[None, :]


class UPDETR(nn.Module):
    """ARS-DETR conditioned on random query patches (module docstring).

    Output: the detector's dict plus ``feature_predictions`` (L, B, Q, C5) and ``patch_targets`` (B dicts
    with ``labels``, ``boxes``, ``angles``, ``aspect_ratios``, ``patch_features`` (N, C5)).
    """

    find_unused_parameters = False

    def __init__(self, detector: ARSDETR, num_patches: int = 10, patch_size: int = 128, min_patch_pixels: int = 8,
                 query_mask_ratio: float = 0.1, group_attention_mask: bool = False):
        super().__init__()
        if detector.decoder.style != "dino":
            raise ValueError("UP-DETR conditions the learned content queries: it needs the ARS-DETR (DN) variant")
        if num_patches < 1 or num_patches > detector.num_queries:
            raise ValueError(f"num_patches must be in [1, num_queries={detector.num_queries}], got {num_patches}")
        self.detector = detector
        self.num_patches, self.patch_size, self.min_patch_pixels = num_patches, patch_size, min_patch_pixels
        self.query_mask_ratio = query_mask_ratio
        self.group_attention_mask = group_attention_mask
        d_model = detector.encoder.level_embed.shape[1]
        feature_dim = detector.backbone.num_channels[-1]
        self.patch_projection = nn.Linear(feature_dim, d_model)
        self.feature_head = MLP(d_model, d_model, feature_dim, 2)

    @torch.no_grad()
    def patch_features(self, images: Tensor, patches: list[Tensor]) -> Tensor:
        """(B, N, C5) average-pooled last backbone level of each patch, resized to patch_size^2."""
        crops = roi_align(images, patches, output_size=self.patch_size, spatial_scale=1.0, sampling_ratio=2,
                          aligned=True)
        features = self.detector.backbone(crops)[-1].mean(dim=(2, 3))
        return features.view(len(patches), self.num_patches, -1)

    def forward(self, images: Tensor, padding_mask: Tensor | None = None, targets: list[dict] | None = None) -> dict:
        """images (B, 3, H, W), padding_mask (B, H, W); ``targets`` are ignored (the patches are the targets)."""
        batch, _, height, width = images.shape
        if padding_mask is None:
            padding_mask = torch.zeros(batch, height, width, dtype=torch.bool, device=images.device)
        patches = random_query_patches(padding_mask, self.num_patches, self.min_patch_pixels)
        features = self.patch_features(images, patches)
        queries_targets = patch_targets(patches, height, width)
        for t, f in zip(queries_targets, features):
            t["patch_features"] = f

        det = self.detector
        enc = det.encode(images, padding_mask)
        num_matching = min(det.num_queries, enc["memory"].shape[1])
        dn = det.prepare_denoising(queries_targets, num_matching)
        group = torch.arange(num_matching, device=images.device) * self.num_patches // num_matching
        addition = self.patch_projection(features)[:, group]  # (B, Q, D)
        if self.training and self.query_mask_ratio > 0:
            keep = torch.rand(batch, num_matching, 1, device=images.device) > self.query_mask_ratio
            addition = addition * keep.to(addition.dtype)

        def condition_queries(module, args, kwargs):
            tgt = args[0]
            pad = tgt.shape[1] - num_matching  # DN slots come first
            tgt = torch.cat([tgt[:, :pad], tgt[:, pad:] + addition], 1)
            if self.group_attention_mask:
                mask = kwargs.get("self_attn_mask")
                if mask is None:
                    mask = torch.zeros(tgt.shape[1], tgt.shape[1], dtype=torch.bool, device=tgt.device)
                mask = mask.clone()
                mask[pad:, pad:] |= group_attention_mask(num_matching, self.num_patches, tgt.device)
                kwargs = dict(kwargs, self_attn_mask=mask)
            return (tgt, *args[1:]), kwargs

        handle = det.decoder.register_forward_pre_hook(condition_queries, with_kwargs=True)
        try:
            out = det.detect_from_memory(enc, dn)
        finally:
            handle.remove()
        out["feature_predictions"] = self.feature_head(out["hs"])
        out["patch_targets"] = queries_targets
        return out

    def on_iteration(self, iteration: int, total_iterations: int) -> None:
        """No per-iteration state (the engine calls this hook on every method)."""


class UPDETRCriterion(nn.Module):
    """Detection loss on the patch boxes + feature reconstruction (module docstring).

    ``forward(outputs, targets)`` ignores ``targets``: it uses ``outputs['patch_targets']``.
    """

    def __init__(self, detection: SetCriterion, num_decoder_layers: int, feature_weight: float = 1.0,
                 feature_loss_layers: str = "all"):
        super().__init__()
        self.detection = detection
        self.feature_loss_layers = feature_loss_layers
        self.weight_dict = dict(detection.weight_dict)
        num_layers = num_decoder_layers
        self.weight_dict["loss_feature"] = feature_weight
        if feature_loss_layers == "all":
            self.weight_dict.update({f"loss_feature_{i}": feature_weight for i in range(num_layers - 1)})

    @staticmethod
    def feature_loss(predictions: Tensor, targets: list[dict], indices, num_patches: float) -> Tensor:
        pred = torch.cat([predictions[b, src] for b, (src, _) in enumerate(indices)])
        gt = torch.cat([t["patch_features"][j] for t, (_, j) in zip(targets, indices)]).to(pred)
        diff = F.normalize(pred.float(), dim=-1) - F.normalize(gt.float(), dim=-1)
        return (diff ** 2).sum() / num_patches

    def forward(self, outputs: dict, targets: list[dict] | None = None) -> dict[str, Tensor]:
        patches = outputs["patch_targets"]
        losses, indices = self.detection(outputs, patches, return_indices=True)
        num = average_num_pos(sum(len(t["labels"]) for t in patches), outputs["pred_logits"].device)
        features = outputs["feature_predictions"]
        losses["loss_feature"] = self.feature_loss(features[-1], patches, indices["last"], num)
        if self.feature_loss_layers == "all":
            for i, aux_idx in enumerate(indices["aux"]):
                losses[f"loss_feature_{i}"] = self.feature_loss(features[i], patches, aux_idx, num)
        for key in losses:
            if key not in self.weight_dict:
                self.weight_dict[key] = self.detection.weight_dict[key]
        return losses


def build_updetr(detector: ARSDETR, detection: SetCriterion, cfg: dict) -> tuple[UPDETR, UPDETRCriterion]:
    """Keys: ``num_patches`` (10), ``patch_size`` (128), ``min_patch_pixels`` (8), ``query_mask_ratio`` (0.1),
    ``feature_weight`` (1.0), ``feature_loss_layers`` ('all'), ``group_attention_mask`` (False)."""
    model = UPDETR(detector, int(cfg.get("num_patches", 10)), int(cfg.get("patch_size", 128)),
                   int(cfg.get("min_patch_pixels", 8)), float(cfg.get("query_mask_ratio", 0.1)),
                   bool(cfg.get("group_attention_mask", False)))
    criterion = UPDETRCriterion(detection, detector.decoder.num_layers, float(cfg.get("feature_weight", 1.0)),
                                cfg.get("feature_loss_layers", "all"))
    return model, criterion
