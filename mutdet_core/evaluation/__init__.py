"""Evaluation (SPEC 5): rotated-polygon VOC AP in the DOTA-devkit and mmrotate conventions, and patch merging.

- ``evaluate_detections`` (:mod:`.dota_eval`): AP50 / AP75 / AP50:95 per class and mAP.
- ``merge_task1_folder`` / ``merge_detections`` (:mod:`.merge`): tile detections -> full-image Task1 files.
- ``write_reports`` (:mod:`.report`): JSON summary, CSV and Markdown tables.
- :mod:`.polyiou` (the devkit's IoU, bit for bit), :mod:`.pair_iou` (fast path with exact decisions),
  :mod:`.ordering` (the devkit's tie order), :mod:`.matching`, :mod:`.ap`, :mod:`.nms`: the parts.
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "COCO_THRESHOLDS": ".dota_eval", "CONVENTIONS": ".dota_eval", "build_convention": ".dota_eval",
    "evaluate_detections": ".dota_eval", "DEVKIT_RESULTMERGE": ".merge", "MUTDET_MERGE": ".merge",
    "MergeParams": ".merge", "build_merge_params": ".merge", "merge_detections": ".merge",
    "merge_task1_folder": ".merge", "batched_poly_nms": ".nms", "poly_nms": ".nms", "iou_poly_pairs": ".polyiou",
    "markdown_table": ".report", "write_reports": ".report",
}

__all__ = [
    "COCO_THRESHOLDS", "CONVENTIONS", "build_convention", "evaluate_detections", "DEVKIT_RESULTMERGE",
    "MUTDET_MERGE", "MergeParams", "build_merge_params", "merge_detections", "merge_task1_folder",
    "batched_poly_nms", "poly_nms", "iou_poly_pairs", "markdown_table", "write_reports",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
