"""Contrastive denoising (DN) queries of ARS-DETR (reference A.5; released ``DnQueryGenerator``).

Layout of the P = 2 * M * G denoising slots of every image (M = max targets per image in the batch,
G = max(1, num_dn_queries // M) groups): group g occupies slots [g*2M, (g+1)*2M); its positive part
g*2M + i takes ground truth i, its negative part g*2M + M + i is a harder-noised copy of ground truth i
whose target is "no object". Slots i >= n_b of an image with n_b < M targets are padding: zero content,
zero (un-activated) reference box and angle, classification target "no object" (as released).

Noise, per slot:
- label: with probability label_noise * 0.5 (0.25 by default) replaced by a uniform random class;
- box: each xyxy corner moves by sign * u * (w/2 or h/2) * box_noise, u ~ U[0, 1) for positives and
  U[1, 2) for negatives, then clamp to [0, 1] and back to cxcywh;
- angle: theta += sign * u * theta * angle_noise (relative to theta itself, same u), wrapped to le90.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, inverse_sigmoid, wrap_angle_le90


class DenoisingGenerator(nn.Module):
    """Builds the DN queries, their references and the self-attention mask for one batch.

    Args:
        num_classes: size of ``label_embedding`` (the DN content query of a slot is the embedding of its
            noised label).
        hidden_dim: D.
        label_noise, box_noise, angle_noise: noise scales (0.5, 0.4, 0.02 released).
        num_dn_queries: target number of DN queries per image: G = max(1, num_dn_queries // M).
    """

    def __init__(self, num_classes: int, hidden_dim: int = 256, label_noise: float = 0.5, box_noise: float = 0.4,
                 angle_noise: float = 0.02, num_dn_queries: int = 100):
        super().__init__()
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.label_noise = label_noise
        self.box_noise = box_noise
        self.angle_noise = angle_noise
        self.num_dn_queries = num_dn_queries
        self.label_embedding = nn.Embedding(num_classes, hidden_dim)

    def num_groups(self, max_gts: int) -> int:
        return max(1, self.num_dn_queries // max(max_gts, 1))

    def forward(self, targets: list[dict], num_matching_queries: int,
                generator: torch.Generator | None = None) -> dict | None:
        """
        Args:
            targets: B dicts with 'labels' (n_b,) int64, 'boxes' (n_b, 4) normalised cxcywh, 'angles' (n_b,).
            num_matching_queries: Q, the number of matching (two-stage) queries that follow the DN slots.
            generator: optional RNG (on the targets' device) for reproducible noise.
        Returns:
            None in eval mode or when no image has a target; else a dict with
            'query_content' (B, P, D), 'reference_boxes_unact' (B, P, 4) = inverse_sigmoid(noised cxcywh,
            eps=1e-3), 'reference_angles' (B, P) le90, 'attn_mask' (P+Q, P+Q) bool (True = may NOT attend),
            'dn_meta' {'pad_size': P, 'num_groups': G, 'max_gts': M}, plus for inspection 'noised_labels'
            (B, P) int64 and 'noised_boxes' (B, P, 4) cxcywh (padding slots: label 0, box 0).
        """
        if not self.training or len(targets) == 0:
            return None
        counts = [len(t["labels"]) for t in targets]
        max_gts = max(counts)
        if max_gts == 0:
            return None
        device = targets[0]["boxes"].device
        dtype = targets[0]["boxes"].dtype
        batch_size, groups = len(targets), self.num_groups(max_gts)
        pad_size = 2 * max_gts * groups

        # Ground truths padded to M per image: (B, M, ...).
        labels = torch.zeros(batch_size, max_gts, dtype=torch.int64, device=device)
        boxes = torch.zeros(batch_size, max_gts, 4, dtype=dtype, device=device)
        angles = torch.zeros(batch_size, max_gts, dtype=dtype, device=device)
        valid = torch.zeros(batch_size, max_gts, dtype=torch.bool, device=device)
        for b, (t, n) in enumerate(zip(targets, counts)):
            labels[b, :n] = t["labels"]
            boxes[b, :n] = t["boxes"].to(dtype)
            angles[b, :n] = t["angles"].to(dtype)
            valid[b, :n] = True

        # Repeat for the 2G parts (positive part of group g = 2g, negative part = 2g + 1): (B, 2G, M, ...).
        parts = 2 * groups
        labels = labels[:, None].expand(-1, parts, -1).clone()
        boxes = boxes[:, None].expand(-1, parts, -1, -1)
        angles = angles[:, None].expand(-1, parts, -1)
        valid = valid[:, None].expand(-1, parts, -1)
        negative = (torch.arange(parts, device=device) % 2 == 1)[None, :, None]  # (1, 2G, 1)

        def rand(*shape):
            return torch.rand(*shape, generator=generator, device=device, dtype=dtype)

        def rand_sign(*shape):
            return torch.randint(0, 2, shape, generator=generator, device=device).to(dtype) * 2 - 1

        if self.label_noise > 0:
            flip = rand(batch_size, parts, max_gts) < self.label_noise * 0.5
            random_labels = torch.randint(0, self.num_classes, labels.shape, generator=generator, device=device)
            labels = torch.where(flip, random_labels, labels)

        if self.box_noise > 0:
            xyxy = box_cxcywh_to_xyxy(boxes)
            half_wh = boxes[..., 2:].repeat(1, 1, 1, 2) / 2  # (w/2, h/2, w/2, h/2)
            magnitude = rand(batch_size, parts, max_gts, 4) + negative[..., None].to(dtype)
            xyxy = xyxy + rand_sign(batch_size, parts, max_gts, 4) * magnitude * half_wh * self.box_noise
            boxes = box_xyxy_to_cxcywh(xyxy.clamp(min=0.0, max=1.0))

        if self.angle_noise > 0:
            magnitude = rand(batch_size, parts, max_gts) + negative.to(dtype)
            angles = angles + rand_sign(batch_size, parts, max_gts) * magnitude * angles * self.angle_noise
            angles = wrap_angle_le90(angles)

        # Flatten to slots g*2M + {0, M} + i and zero the padding slots.
        labels = torch.where(valid, labels, torch.zeros_like(labels)).reshape(batch_size, pad_size)
        valid = valid.reshape(batch_size, pad_size)
        boxes = (boxes * valid.reshape(batch_size, parts, max_gts)[..., None]).reshape(batch_size, pad_size, 4)
        angles = (angles * valid.reshape(batch_size, parts, max_gts)).reshape(batch_size, pad_size)
        content = self.label_embedding(labels) * valid[..., None].to(self.label_embedding.weight.dtype)
        boxes_unact = torch.where(valid[..., None], inverse_sigmoid(boxes, eps=1e-3), torch.zeros_like(boxes))

        return {
            "query_content": content,
            "reference_boxes_unact": boxes_unact,
            "reference_angles": angles,
            "attn_mask": build_dn_attn_mask(pad_size, groups, num_matching_queries, device),
            "dn_meta": {"pad_size": pad_size, "num_groups": groups, "max_gts": max_gts},
            "noised_labels": labels,
            "noised_boxes": boxes,
        }


def build_dn_attn_mask(pad_size: int, num_groups: int, num_matching_queries: int, device=None) -> Tensor:
    """(P+Q, P+Q) bool self-attention mask, True = may NOT attend (nn.MultiheadAttention convention).

    Matching queries cannot see any DN slot (they would read the answers); DN groups cannot see each
    other; within a group positives and negatives see each other, and DN slots see the matching queries.
    """
    size = pad_size + num_matching_queries
    mask = torch.zeros(size, size, dtype=torch.bool, device=device)
    mask[pad_size:, :pad_size] = True
    group = pad_size // num_groups
    for g in range(num_groups):
        rows = slice(g * group, (g + 1) * group)
        mask[rows, : g * group] = True
        mask[rows, (g + 1) * group: pad_size] = True
    return mask


def split_dn_outputs(outputs: dict, pad_size: int, dim: int = 1) -> tuple[dict, dict]:
    """Split the per-query tensors of a decoder that ran on [P DN slots, Q matching queries].

    Args:
        outputs: tensors with the P+Q queries on dimension ``dim``: dim=1 for (B, P+Q, ...) per-layer
            outputs, dim=2 for layer-stacked (L, B, P+Q, ...) outputs. Non-tensor values go to both.
        pad_size: P, ``dn_meta['pad_size']``.
    Returns:
        (matching, dn): the same keys with Q and P queries on ``dim``.
    """
    matching, dn = {}, {}
    for key, value in outputs.items():
        if not isinstance(value, Tensor):
            matching[key] = dn[key] = value
            continue
        dn[key] = value.narrow(dim, 0, pad_size)
        matching[key] = value.narrow(dim, pad_size, value.shape[dim] - pad_size)
    return matching, dn
