"""Oriented-box geometry: conversions (``obb``), exact overlaps (``polygon_iou``) and NMS (``nms``).

All public functions accept numpy arrays or torch tensors (CPU or CUDA) and return the caller's kind.
"""
from .nms import batched_rotated_nms, rotated_nms
from .obb import (convert_version, get_best_begin_point, norm_angle, obb2hbb, obb2poly, poly2hbb, poly2obb,
                  poly2obb_min_area, regularize_obb, valid_obb_mask)
from .polygon_iou import obb_iou, poly_iou

__all__ = [
    "batched_rotated_nms", "convert_version", "get_best_begin_point", "norm_angle", "obb2hbb", "obb2poly",
    "obb_iou", "poly2hbb", "poly2obb", "poly2obb_min_area", "poly_iou", "regularize_obb", "rotated_nms",
    "valid_obb_mask",
]
