"""Oriented-box geometry: conversions (``obb``), exact overlaps (``polygon_iou``) and NMS (``nms``).

All public functions accept numpy arrays or torch tensors (CPU or CUDA) and return the caller's kind.
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "batched_rotated_nms": ".nms", "rotated_nms": ".nms", "convert_version": ".obb", "get_best_begin_point": ".obb",
    "norm_angle": ".obb", "obb2hbb": ".obb", "obb2poly": ".obb", "poly2hbb": ".obb", "poly2obb": ".obb",
    "poly2obb_min_area": ".obb", "regularize_obb": ".obb", "valid_obb_mask": ".obb", "obb_iou": ".polygon_iou",
    "poly_iou": ".polygon_iou",
}

__all__ = [
    "batched_rotated_nms", "convert_version", "get_best_begin_point", "norm_angle", "obb2hbb", "obb2poly",
    "obb_iou", "poly2hbb", "poly2obb", "poly2obb_min_area", "poly_iou", "regularize_obb", "rotated_nms",
    "valid_obb_mask",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
