"""Helpers shared by the tests/test_models_training_side_*.py files (this module holds no tests)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from shapely.geometry import Polygon

from mutdet_core.datasets.dota import read_dota_txt
from mutdet_core.models.rotated_iou_loss import box_corners


def shapely_rbox(box) -> Polygon:
    """Shapely polygon of one (cx, cy, w, h, theta) box."""
    return Polygon(box_corners(torch.as_tensor(box, dtype=torch.float64)).tolist())


def shapely_iou(box1, box2) -> float:
    p1, p2 = shapely_rbox(box1), shapely_rbox(box2)
    union = p1.union(p2).area
    return p1.intersection(p2).area / union if union > 0 else 0.0


def polygon_to_le90(poly: np.ndarray) -> tuple[float, float, float, float, float]:
    """(8,) DOTA polygon -> (cx, cy, w, h, theta) le90 via cv2.minAreaRect (mmrotate's poly2obb_np_le90)."""
    (cx, cy), (w, h), angle = cv2.minAreaRect(poly.reshape(4, 2).astype(np.float32))
    theta = math.radians(angle)
    if w < h:
        w, h, theta = h, w, theta + math.pi / 2
    theta = (theta + math.pi / 2) % math.pi - math.pi / 2
    return cx, cy, w, h, theta


def real_targets(label_path, size: float | None = None, class_names=None) -> dict:
    """Contract targets of one real DOTA label file, normalised by a square input of side ``size``
    (default: the bounding extent of the objects), objects with w or h < 2 px dropped as mmrotate does."""
    record = read_dota_txt(label_path)
    rboxes = np.array([polygon_to_le90(p) for p in record.polygons], dtype=np.float64)
    keep = (rboxes[:, 2] >= 2) & (rboxes[:, 3] >= 2)
    rboxes = rboxes[keep]
    classes = [c for c, k in zip(record.classes, keep) if k]
    names = sorted(set(classes)) if class_names is None else list(class_names)
    size = size or float(np.ceil(record.polygons.reshape(-1, 2).max()) + 1)
    boxes = torch.tensor(rboxes[:, :4] / size, dtype=torch.float32).clamp(0, 1)
    return {
        "labels": torch.tensor([names.index(c) for c in classes], dtype=torch.int64),
        "boxes": boxes,
        "angles": torch.tensor(rboxes[:, 4], dtype=torch.float32),
        "polygons": torch.tensor(record.polygons[keep] / size, dtype=torch.float64),
        "class_names": names,
    }


def make_targets(counts, seed=0, num_classes=4) -> list[dict]:
    """Seeded random ground truths, one dict per image of ``counts[b]`` objects: ``labels`` (n,),
    ``boxes`` (n, 4) normalised cx, cy, w, h, ``angles`` (n,) radians."""
    g = torch.Generator().manual_seed(seed)
    return [{"labels": torch.randint(0, num_classes, (n,), generator=g),
             "boxes": torch.cat([torch.rand(n, 2, generator=g) * 0.6 + 0.2,
                                 torch.rand(n, 2, generator=g) * 0.2 + 0.03], 1),
             "angles": (torch.rand(n, generator=g) - 0.5) * math.pi} for n in counts]


def stage(batch, queries, bins, coder, g, leading=(), num_classes=4) -> dict:
    """Random predictions of one stage from generator ``g``: ``pred_logits`` (*leading, B, Q, C),
    ``pred_boxes`` (*leading, B, Q, 4), ``pred_angle_logits`` (*leading, B, Q, bins), ``pred_angles``."""
    angle_logits = torch.randn(*leading, batch, queries, bins, generator=g)
    return {"pred_logits": torch.randn(*leading, batch, queries, num_classes, generator=g),
            "pred_boxes": torch.rand(*leading, batch, queries, 4, generator=g) * 0.5 + 0.2,
            "pred_angle_logits": angle_logits, "pred_angles": coder.decode(angle_logits)}
