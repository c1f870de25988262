"""Detector outputs -> per-image oriented detections in pixels (reference A.1 "Test").

As released: sigmoid scores of the last decoder layer, the top ``num_select`` (300) (query, class) pairs
over the flattened Q x C scores (label = index % C, query = index // C), no NMS and no score threshold
(DOTA's patch merging filters and suppresses later).

Deliberate fix: the release multiplies all four of (cx, cy, w, h) by the image *width* (exact only for
square inputs). Here x-like values scale by the padded input width W and y-like ones by its height H:
cx * W, cy * H, w * W, h * H -- the inverse of the targets' normalisation (w by W, h by H). For square
tiles (every released config) both agree.

Boxes are then rewritten in le90 (w >= h, theta in [-pi/2, pi/2); w and h swapped with theta + pi/2 when
the network predicts w < h: the same rectangle), and converted to DOTA polygons (x1 y1 .. x4 y4).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..geometry import obb2poly, regularize_obb


class PostProcess(nn.Module):
    """Top-k (query, class) selection and conversion to pixel le90 boxes and polygons."""

    def __init__(self, num_select: int = 300):
        super().__init__()
        self.num_select = num_select

    @torch.no_grad()
    def forward(self, outputs: dict, input_size: tuple[int, int] | Tensor,
                scale_factors: Tensor | None = None) -> list[dict]:
        """
        Args:
            outputs: model outputs with 'pred_logits' (B, Q, C), 'pred_boxes' (B, Q, 4) cxcywh normalised to
                the padded input, 'pred_angles' (B, Q) radians.
            input_size: (H, W) of the padded input tensor, or a (B, 2) tensor of per-image (H, W).
            scale_factors: optional (B, 2) (sx, sy) resize factors original -> input (or (B,) for keep-ratio);
                pixel boxes are mapped back to the original image: centres divided by (sx, sy), w and h by
                sqrt(sx * sy) (mmrotate ``RResize``).
        Returns:
            B dicts: 'scores' (k,), 'labels' (k,) int64, 'boxes' (k, 5) le90 (cx, cy, w, h, theta) in pixels,
            'polygons' (k, 8) pixels; k = min(num_select, Q * C), sorted by score.
        """
        logits, boxes, angles = outputs["pred_logits"], outputs["pred_boxes"], outputs["pred_angles"]
        batch, num_queries, num_classes = logits.shape
        k = min(self.num_select, num_queries * num_classes)
        scores, index = logits.sigmoid().flatten(1).topk(k, dim=1)
        query = torch.div(index, num_classes, rounding_mode="floor")
        labels = index % num_classes
        boxes = torch.gather(boxes, 1, query[..., None].expand(-1, -1, 4))
        angles = torch.gather(angles, 1, query)

        size = torch.as_tensor(input_size, dtype=boxes.dtype, device=boxes.device)
        size = size.expand(batch, 2) if size.dim() == 1 else size
        height, width = size[:, 0:1], size[:, 1:2]  # (B, 1)
        cx, cy, w, h = boxes.unbind(-1)
        cx, w = cx * width, w * width
        cy, h = cy * height, h * height
        if scale_factors is not None:
            sf = torch.as_tensor(scale_factors, dtype=boxes.dtype, device=boxes.device)
            sf = sf[:, None].expand(batch, 2) if sf.dim() == 1 else sf
            sx, sy = sf[:, 0:1], sf[:, 1:2]
            scale_wh = torch.sqrt(sx * sy)
            cx, cy, w, h = cx / sx, cy / sy, w / scale_wh, h / scale_wh
        rboxes = regularize_obb(torch.stack([cx, cy, w, h, angles], -1), "le90")
        polygons = obb2poly(rboxes, "le90")
        return [{"scores": scores[b], "labels": labels[b], "boxes": rboxes[b], "polygons": polygons[b]}
                for b in range(batch)]


def build_postprocess(num_select: int = 300) -> PostProcess:
    return PostProcess(num_select)

