"""``build_pretrainer(method_cfg, detector_cfg) -> (model, criterion)`` for every pre-training method.

The engine trains any method the same way (mutdet_core/engine/trainer.py):

    outputs = model(images (B, 3, H, W), padding_mask (B, H, W) bool, targets)
    losses = criterion(outputs, targets)
    total = sum(criterion.weight_dict[k] * losses[k] for k in losses if k in criterion.weight_dict)

and, after every optimizer step, ``model.on_iteration(iteration, total_iterations)`` (AlignDet's EMA
update; a no-op for the other methods). ``model.find_unused_parameters`` says whether DDP must be built
with ``find_unused_parameters=True`` (some module takes part in no loss in that configuration).

The model wraps the detector as ``model.detector`` (checkpoint keys ``detector.<detector keys>``); the
method's own modules sit beside it (``mutual_enhancement``, ``embedding_head``, ...), see
docs/checkpoints.md and ``transfer.py``.

Method config keys (``method_cfg``; unknown keys are an error):

    method               'mutdet' | 'detreg' | 'updetr' | 'aligndet'                      (required)
    embedding_dim        width E of the pseudo-label embeddings                           256
  mutdet (mutdet.py, mutdet_criterion.py, calibration.py):
    contrastive_loss, enhanced_embedding, enhanced_feature, encoder_loss  Table 7 switches  true
    calibration          'siamese_head' | 'none' | 'encoder_feature_distillation' |
                         'decoder_cross_distillation' (Table 1)                           'siamese_head'
    temperature          InfoNCE temperature T                                            0.2
    direction_weight     weight of each InfoNCE direction (null = 2T)                     null
    embed_loss           regression loss when contrastive_loss is off: 'mse' | 'l1'       'mse'
    dn_alignment         'first_group' | 'all_groups' | 'released' | 'none'               'first_group'
    encoder_alignment    'hungarian_all' (released) | 'topk' (paper text)                 'hungarian_all'
    align_weight         weight of every align_* loss                                     1.0
    distillation_weight  weight of every distill_* loss                                   1.0
    gather_distributed   InfoNCE negatives gathered from all DDP ranks                    false
    enhancement_layers / enhancement_heads / enhancement_mlp_dim                          3 / 8 / 2048
    released_encoder_embedding_init  Xavier-uniform weights for encoder_embedding_head, as
                         released (patch_enc_decode); false = PyTorch's Linear init          false
  detreg (detreg.py): embed_loss 'mse', embed_weight 1.0, align_dn true, dn_alignment 'first_group'
  updetr (updetr.py): num_patches 10, patch_size 128, min_patch_pixels 8, query_mask_ratio 0.1,
    feature_weight 1.0, feature_loss_layers 'all' | 'last', group_attention_mask false
  aligndet (aligndet.py, aligndet_views.py; defaults = liming-ai/AlignDet as released):
    temperature 0.5, contrastive_weight 1.0, base_momentum 0.996, projector_hidden_dim 256 (null = D),
    projector_dim 256,
    views            'two_views' (two independently augmented views, same box ids) |
                     'flip_jitter' (view 2 derived from the batch: flips + brightness/contrast)   'two_views'
    view_scales      scale-jitter factors in (0, 1] of the loader's size            [0.8, 0.84, ..., 1.0]
    view_flip_prob   flip probability (two_views: horizontal; flip_jitter: each axis)              0.5
    view_color_ops   colour operations drawn one per view (identity, autocontrast, equalize, solarize,
                     color, contrast, brightness, sharpness, posterize)                         all nine
    view_color_jitter  brightness/contrast strength, flip_jitter only                              0.4
    max_boxes        first boxes kept per image (SelectTopKProposals; null = all)   num_queries // 2
    pairing          'box_identity' (second matching with box ids as labels) |
                     'detection_matching' (the pseudo-class matching)                    'box_identity'
    missing_key      box without a target-view query: 'query' (its online queries) | 'skip'      'query'
    optimizer        'released' (over pretrain.train: AdamW lr 2e-4 x total batch / 64, wd 1e-4,
                     clip 0.1, no warm-up) |
                     'shared' (pretrain.train as is); read by runs/pretrain.py              'released'

The rows of Tables 1 and 7 are ready-made method configs in ``ablations.py`` (``ablation_config``).

The detector config is the detector's own (mutdet_core/models/detector.py); pre-training defaults:
``num_classes: 256`` when absent and ``backbone.freeze_all: true`` when absent.
"""
from __future__ import annotations

from torch import nn

from ..models.detector import build_detector
from .aligndet import build_aligndet
from .detreg import build_detreg
# the method-config checks live in the torch-free method_config.py (config checks at DAG time import it alone)
from .method_config import (CHOICES, COMMON_KEYS, METHOD_KEYS, METHODS, SWITCHES,  # noqa: F401
                            check_method_config, pretraining_detector_config)
from .mutdet import MutDet
from .mutdet_criterion import MutDetCriterion
from .updetr import build_updetr

def build_mutdet(detector, detection, cfg: dict) -> tuple[MutDet, MutDetCriterion]:
    model = MutDet(detector, int(cfg.get("embedding_dim", 256)),
                   **{k: bool(cfg.get(k, True)) for k in SWITCHES},
                   calibration=cfg.get("calibration", "siamese_head"),
                   enhancement_cfg={k: cfg[k] for k in ("enhancement_layers", "enhancement_heads",
                                                        "enhancement_mlp_dim") if k in cfg},
                   released_encoder_embedding_init=bool(cfg.get("released_encoder_embedding_init", False)))
    direction_weight = cfg.get("direction_weight")
    criterion = MutDetCriterion(
        detection, model.passes, contrastive_loss=model.contrastive_loss,
        temperature=float(cfg.get("temperature", 0.2)),
        direction_weight=None if direction_weight is None else float(direction_weight),
        embed_loss=cfg.get("embed_loss", "mse"), dn_alignment=cfg.get("dn_alignment", "first_group"),
        encoder_loss=model.encoder_loss, encoder_alignment=cfg.get("encoder_alignment", "hungarian_all"),
        align_weight=float(cfg.get("align_weight", 1.0)),
        distillation_weight=float(cfg.get("distillation_weight", 1.0)),
        gather_distributed=bool(cfg.get("gather_distributed", False)))
    return model, criterion


BUILDERS = {"mutdet": build_mutdet, "detreg": build_detreg, "updetr": build_updetr, "aligndet": build_aligndet}


def build_pretrainer(method_cfg: dict, detector_cfg: dict | None = None) -> tuple[nn.Module, nn.Module]:
    """(model, criterion) of a pre-training method (module docstring for the keys)."""
    method_cfg = dict(method_cfg or {})
    method = check_method_config(method_cfg)
    detector, detection, _ = build_detector(pretraining_detector_config(detector_cfg))
    return BUILDERS[method](detector, detection, method_cfg)
