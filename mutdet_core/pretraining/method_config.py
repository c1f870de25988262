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

COMMON_KEYS = {"method", "embedding_dim"}
METHOD_KEYS = {
    "mutdet": set(SWITCHES) | {"calibration", "temperature", "direction_weight", "embed_loss", "dn_alignment",
                               "encoder_alignment", "align_weight", "distillation_weight", "gather_distributed",
                               "enhancement_layers", "enhancement_heads", "enhancement_mlp_dim"},
    "detreg": {"embed_loss", "embed_weight", "align_dn", "dn_alignment"},
    "updetr": {"num_patches", "patch_size", "min_patch_pixels", "query_mask_ratio", "feature_weight",
               "feature_loss_layers", "group_attention_mask"},
    "aligndet": {"temperature", "contrastive_weight", "base_momentum", "projector_hidden_dim", "projector_dim",
                 "view_flip_prob", "view_color_jitter"},
}
METHODS = tuple(METHOD_KEYS)
CHOICES = {"calibration": CALIBRATIONS, "embed_loss": EMBED_LOSSES, "dn_alignment": DN_ALIGNMENTS,
           "encoder_alignment": ENCODER_ALIGNMENTS, "feature_loss_layers": ("all", "last")}


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
    for key in (*SWITCHES, "gather_distributed", "align_dn", "group_attention_mask"):
        if key in cfg and not isinstance(cfg[key], bool):
            raise ValueError(f"{method}.{key} must be true or false, got {cfg[key]!r}")
    return method


def pretraining_detector_config(detector_cfg: dict | None) -> dict:
    """The detector config with the pre-training defaults (256 pseudo-classes, fully frozen backbone)."""
    cfg = copy.deepcopy(dict(detector_cfg or {}))
    cfg.setdefault("num_classes", 256)
    backbone = dict(cfg.get("backbone") or {"name": "resnet50"})
    backbone.setdefault("freeze_all", True)
    cfg["backbone"] = backbone
    return cfg
