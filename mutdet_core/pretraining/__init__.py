"""Detection pre-training methods on ARS-DETR: MutDet (with the paper's ablation switches), DETReg, UP-DETR,
AlignDet; ``build_pretrainer`` builds any of them, ``load_pretraining_checkpoint`` transfers the result."""
from .build import METHODS, build_pretrainer, check_method_config, pretraining_detector_config
from .transfer import load_pretraining_checkpoint

__all__ = ["METHODS", "build_pretrainer", "check_method_config", "load_pretraining_checkpoint",
           "pretraining_detector_config"]
