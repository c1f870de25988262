"""Method-config checks of ``build_pretrainer`` (build.py, whose docstring lists the keys), torch-free.

The config checks at DAG-building time (``runs.plan.check_run_configs``) import this module alone, so a
Snakemake start-up or ``mutdet check-config`` imports no torch. The choice tuples are defined here and
re-exported by the modules that use them (``mutdet.py``, ``contrastive_alignment.py``,
``mutdet_criterion.py``).
"""
from __future__ import annotations

import copy

EMBED_LOSSES = ("mse", "l1")                                      # contrastive_alignment.py
DN_ALIGNMENTS = ("first_group", "all_groups", "released", "none")  # contrastive_alignment.py
CALIBRATIONS = ("siamese_head", "none", "encoder_feature_distillation", "decoder_cross_distillation")  # mutdet.py
SWITCHES = ("contrastive_loss", "enhanced_embedding", "enhanced_feature", "encoder_loss")  # mutdet.py
ENCODER_ALIGNMENTS = ("hungarian_all", "topk")                    # mutdet_criterion.py
# aligndet.py / aligndet_views.py
ALIGNDET_VIEWS = ("two_views", "flip_jitter")
ALIGNDET_PAIRINGS = ("box_identity", "detection_matching")
ALIGNDET_MISSING_KEYS = ("query", "skip")
ALIGNDET_OPTIMIZERS = ("released", "shared")
COLOR_OPS = ("identity", "autocontrast", "equalize", "solarize", "color", "contrast", "brightness", "sharpness",
             "posterize")  # AlignDet's OneOf list (configs/_base_/datasets/coco_soft-teacher.py)
# AlignDet's released optimiser (configs/selfsup/detr.py: AdamW lr 2e-4, weight_decay 1e-4, grad_clip max_norm 0.1,
# lr_config without warm-up); ``optimizer: released`` puts these over pretrain.train for the aligndet method.
# The lr is for 64 images a step: ``auto_scale_lr = dict(enable=True, base_batch_size=64)`` makes mmdet 2.25
# (apis/train.py auto_scale_lr) scale it linearly to the run's total batch (GPUs x samples per GPU).
# Epochs and the decay step stay the shared schedule: MutDet's own AlignDet baseline ran 36 epochs
# (floatingstarZ/MutDet tools/convert_checkpoints.py converts E3_AlignDet_epoch_36.pth).
ALIGNDET_RELEASED_TRAIN = {"lr": 2e-4, "weight_decay": 1e-4, "clip_max_norm": 0.1, "warmup_iters": 0}
ALIGNDET_BASE_BATCH_SIZE = 64

COMMON_KEYS = {"method", "embedding_dim"}
METHOD_KEYS = {
    "mutdet": set(SWITCHES) | {"calibration", "temperature", "direction_weight", "embed_loss", "dn_alignment",
                               "encoder_alignment", "align_weight", "distillation_weight", "gather_distributed",
                               "enhancement_layers", "enhancement_heads", "enhancement_mlp_dim",
                               "released_encoder_embedding_init"},
    "detreg": {"embed_loss", "embed_weight", "align_dn", "dn_alignment"},
    "updetr": {"num_patches", "patch_size", "min_patch_pixels", "query_mask_ratio", "feature_weight",
               "feature_loss_layers", "group_attention_mask"},
    "aligndet": {"temperature", "contrastive_weight", "base_momentum", "projector_hidden_dim", "projector_dim",
                 "view_flip_prob", "view_color_jitter", "views", "view_scales", "view_color_ops", "pairing",
                 "missing_key", "max_boxes", "optimizer"},
}
METHODS = tuple(METHOD_KEYS)
CHOICES = {"calibration": CALIBRATIONS, "embed_loss": EMBED_LOSSES, "dn_alignment": DN_ALIGNMENTS,
           "encoder_alignment": ENCODER_ALIGNMENTS, "feature_loss_layers": ("all", "last"),
           "views": ALIGNDET_VIEWS, "pairing": ALIGNDET_PAIRINGS, "missing_key": ALIGNDET_MISSING_KEYS,
           "optimizer": ALIGNDET_OPTIMIZERS}


def check_method_config(cfg: dict) -> str:
    """Validate the method config (method name, known keys, choices, booleans); returns the method."""
    method = cfg.get("method")
    if method not in METHOD_KEYS:
        raise ValueError(f"pre-training method {method!r} is not one of {list(METHODS)}")
    unknown = sorted(set(cfg) - COMMON_KEYS - METHOD_KEYS[method])
    if unknown:
        raise ValueError(f"unknown config keys {unknown} for pre-training method {method!r}; known: "
                         f"{sorted(COMMON_KEYS | METHOD_KEYS[method])}")
    for key, choices in CHOICES.items():
        if key in cfg and cfg[key] not in choices:
            raise ValueError(f"{method}.{key} = {cfg[key]!r} is not one of {list(choices)}")
    for key in (*SWITCHES, "gather_distributed", "align_dn", "group_attention_mask",
                "released_encoder_embedding_init"):
        if key in cfg and not isinstance(cfg[key], bool):
            raise ValueError(f"{method}.{key} must be true or false, got {cfg[key]!r}")
    if method == "aligndet":
        _check_aligndet_views(cfg)
    return method


def _check_aligndet_views(cfg: dict) -> None:
    ops = cfg.get("view_color_ops", COLOR_OPS)
    if isinstance(ops, str) or not ops or any(op not in COLOR_OPS for op in ops):
        raise ValueError(f"aligndet.view_color_ops = {ops!r}: a non-empty list of {list(COLOR_OPS)}")
    scales = cfg.get("view_scales", [1.0])
    if (isinstance(scales, (str, bool)) or not scales
            or any(isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 1 for s in scales)):
        raise ValueError(f"aligndet.view_scales = {scales!r}: a non-empty list of factors in (0, 1]")
    max_boxes = cfg.get("max_boxes")
    if max_boxes is not None and (isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1):
        raise ValueError(f"aligndet.max_boxes = {max_boxes!r}: a positive integer or null")


def method_train_overrides(cfg: dict, total_batch_size: int) -> dict:
    """``TrainConfig`` fields a method config puts over ``pretrain.train``: AlignDet's released optimiser
    (``ALIGNDET_RELEASED_TRAIN``, lr scaled by ``total_batch_size / 64`` as its ``auto_scale_lr``) for
    ``method: aligndet`` unless ``optimizer: shared``; else nothing. ``total_batch_size``: images per
    optimizer step over all processes."""
    if cfg.get("method") == "aligndet" and cfg.get("optimizer", "released") == "released":
        out = dict(ALIGNDET_RELEASED_TRAIN)
        out["lr"] = out["lr"] * total_batch_size / ALIGNDET_BASE_BATCH_SIZE
        return out
    return {}


def pretraining_detector_config(detector_cfg: dict | None) -> dict:
    """The detector config with the pre-training defaults (256 pseudo-classes, fully frozen backbone)."""
    cfg = copy.deepcopy(dict(detector_cfg or {}))
    cfg.setdefault("num_classes", 256)
    backbone = dict(cfg.get("backbone") or {"name": "resnet50"})
    backbone.setdefault("freeze_all", True)
    cfg["backbone"] = backbone
    return cfg
