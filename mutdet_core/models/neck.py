"""Channel mapper neck (mmdet ``ChannelMapper`` as configured by ARS-DETR, reference A.1).

Each backbone level goes through a 1x1 conv + GroupNorm(32) to ``d_model`` channels (no activation);
one extra, coarser level is made by a 3x3 stride-2 conv + GroupNorm on the *raw* last backbone output
(C5, 2048 channels for ResNet-50), giving four levels at strides 8 / 16 / 32 / 64. Convs have no bias
(mmcv ``ConvModule`` drops it when a norm follows) and are Xavier-uniform initialised.
"""
from __future__ import annotations

from torch import Tensor, nn


def _conv_gn(c_in: int, c_out: int, kernel: int, stride: int, num_groups: int) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
    nn.init.xavier_uniform_(conv.weight)
    return nn.Sequential(conv, nn.GroupNorm(num_groups, c_out))


class ChannelMapper(nn.Module):
    """Maps backbone maps [C3, C4, C5] to ``len(in_channels) + num_extra`` maps of ``d_model`` channels.

    Parameters: ``lateral_convs.i.{0: conv, 1: gn}`` per input level, ``extra_convs.j.{0, 1}`` per extra level.
    The first extra level reads the last *backbone* map, later ones (if any) the previous extra output.
    """

    def __init__(self, in_channels: tuple[int, ...] | list[int], d_model: int = 256, num_extra: int = 1,
                 num_groups: int = 32):
        super().__init__()
        # 32 groups of 8 channels at d_model 256; narrower test models keep >= 8 channels per group so that
        # GroupNorm stays defined on 1 x 1 maps.
        groups = min(num_groups, max(1, d_model // 8))
        if d_model % groups:
            raise ValueError(f"d_model ({d_model}) must be divisible by the GroupNorm groups ({groups})")
        self.lateral_convs = nn.ModuleList(_conv_gn(c, d_model, 1, 1, groups) for c in in_channels)
        extra_in = [in_channels[-1]] + [d_model] * (num_extra - 1)
        self.extra_convs = nn.ModuleList(_conv_gn(c, d_model, 3, 2, groups) for c in extra_in)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """[(B, C_i, H_i, W_i)] -> [(B, d_model, H_l, W_l)] for l = 0..n_levels-1, finest first."""
        outs = [conv(f) for conv, f in zip(self.lateral_convs, features)]
        x = features[-1]
        for conv in self.extra_convs:
            x = conv(x)
            outs.append(x)
        return outs


def build_neck(in_channels: tuple[int, ...] | list[int], d_model: int = 256, n_levels: int = 4) -> ChannelMapper:
    """Neck giving ``n_levels`` maps from the backbone's ``in_channels`` (extra levels = n_levels - inputs)."""
    num_extra = n_levels - len(in_channels)
    if num_extra < 0:
        raise ValueError(f"n_levels ({n_levels}) is smaller than the number of backbone levels ({len(in_channels)})")
    return ChannelMapper(in_channels, d_model, num_extra)
