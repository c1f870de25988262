"""Detection pre-training methods on ARS-DETR: MutDet (with the paper's ablation switches), DETReg, UP-DETR,
AlignDet; ``build_pretrainer`` builds any of them, ``load_pretraining_checkpoint`` transfers the result."""
from .._lazy import lazy_exports

_EXPORTS = {
    "METHODS": ".method_config", "build_pretrainer": ".build", "check_method_config": ".method_config",
    "pretraining_detector_config": ".method_config", "load_pretraining_checkpoint": ".transfer",
}

__all__ = ["METHODS", "build_pretrainer", "check_method_config", "load_pretraining_checkpoint",
           "pretraining_detector_config"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
