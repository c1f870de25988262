"""Angle coders of the ARS-DETR family (reference A.2, A.7).

All angles are radians in the le90 convention (w >= h, theta in [-pi/2, pi/2)).

- ``CSLCoder(window='gaussian', sigma=6)``: Circular Smooth Label, 180 bins of 1 degree; the target is a
  Gaussian of the circular bin distance, laid over the *whole* circle (not truncated at +-sigma).
- ``CSLCoder(window='aspect_ratio', normalize=True)``: AR-CSL. The value at offset d is the IoU between
  the ground-truth rectangle and itself rotated by |d| degrees; it depends only on the aspect ratio k.
  With ``normalize`` the curve is shifted/scaled so that its minimum over the circle is exactly 0.
- ``RegressionAngleCoder``: one logit t, angle = (sigmoid(t) - 0.5) * pi (plain Rotated Deformable DETR).

Interface shared with the detector (see docs/DETECTOR_CONTRACT.md):
``encode(angles (N,), aspect_ratios (N,) or None) -> (N, A)`` targets, ``decode(logits (..., A)) -> (...,)``
radians, ``num_bins`` = A.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

ANGLE_RANGE_DEG = 180  # le90 covers 180 degrees
ANGLE_OFFSET_DEG = 90  # le90: bin 0 starts at -90 degrees


def arcsl_window(aspect_ratio: Tensor, normalize: bool = True, omega: int = 1) -> Tensor:
    """AR-CSL smoothing values for offsets d = -90..89 (in bins of ``omega`` degrees).

    Args:
        aspect_ratio: (N,) aspect ratios k = max(w/h, h/w) >= 1.
        normalize: map each row v to (v - min v) / (1 - min v), so the far end is exactly 0 (ARS-DETR's
            arcsl and full configs use it).
    Returns:
        (N, 180 // omega) values; column j is offset d = j - 90 // omega. Same dtype as ``aspect_ratio``.

    The closed form is the released ``CSLCoder.aspect_ratio_smooth`` for a rectangle of half-width 1 and
    half-height k rotated by theta = |d| degrees:
      - small angles (|d| <= critical index): the intersection is an octagon-like hexagon,
        x = (1 - k tan(theta/2)) tan(theta), y = (k sin(theta) - 2 sin^2(theta/2)) / cos(theta),
        iou2 = (4k tan(theta) - x^2 - y^2) / (4k tan(theta) + x^2 + y^2);
      - large angles: the intersection is a rhombus-like parallelogram, iou1 = 4 / (8k sin(theta) - 4);
      - critical index = floor(2 (pi/2 - arctan k) / pi * 180 / omega).
    It is evaluated in float64 (the 90-degree value for a square is a 1e16 / 1e16 ratio). At d = 0 the
    released code substitutes theta = 1e-6 only to avoid 0/0; we use the limit value 1 (the IoU of a box
    with itself) instead, a difference of about k * 1e-6.
    """
    if aspect_ratio.dim() != 1:
        raise ValueError(f"aspect_ratio must be 1-D (N,), got shape {tuple(aspect_ratio.shape)}")
    n_bins = ANGLE_RANGE_DEG // omega
    k = aspect_ratio.detach().to(torch.float64).clamp(min=1.0)[:, None]  # (N, 1)
    offsets = torch.arange(-n_bins // 2, n_bins // 2, device=aspect_ratio.device)  # (180,) bins
    theta = offsets.abs().to(torch.float64) * (omega * math.pi / 180)
    theta = torch.where(offsets == 0, torch.full_like(theta, 1e-6), theta)[None, :]  # (1, 180)

    iou1 = 4 / (8 * k * torch.sin(theta) - 4)
    x = (1 - k * torch.tan(theta / 2)) * torch.tan(theta)
    y = (-2 * torch.sin(theta / 2) ** 2 + k * torch.sin(theta)) / torch.cos(theta)
    iou2 = (4 * k * torch.tan(theta) - x * x - y * y) / (4 * k * torch.tan(theta) + x * x + y * y)
    critical = torch.floor(2 * (math.pi / 2 - torch.arctan(k)) / math.pi * 180 / omega)  # (N, 1)
    values = torch.where(offsets.abs()[None, :] <= critical, iou2, iou1)
    values = torch.where(offsets[None, :] == 0, torch.ones_like(values), values)
    if normalize:
        v_min = values.min(dim=1, keepdim=True).values
        values = (values - v_min) / (1 - v_min)
    return values.to(aspect_ratio.dtype)


class CSLCoder(nn.Module):
    """Circular Smooth Label coder: 180 bins of 1 degree over le90 (reference A.2).

    Args:
        window: 'gaussian' (CSL) or 'aspect_ratio' (AR-CSL).
        sigma: Gaussian width in bins (the released config calls it ``radius=6``); unused by AR-CSL.
        normalize: AR-CSL normalisation (min of the curve -> 0); ignored for the Gaussian window.
    """

    def __init__(self, window: str = "gaussian", sigma: float = 6.0, normalize: bool = False, omega: int = 1):
        super().__init__()
        if window not in ("gaussian", "aspect_ratio"):
            raise ValueError(f"unknown CSL window {window!r}; expected 'gaussian' or 'aspect_ratio'")
        if omega != 1:
            # The released coder asserts omega == 1; other granularities are not part of the family.
            raise ValueError(f"only omega=1 (180 one-degree bins) is supported, got {omega}")
        self.window = window
        self.sigma = float(sigma)
        self.normalize = normalize
        self.omega = omega
        self.num_bins = ANGLE_RANGE_DEG // omega

    def extra_repr(self) -> str:
        return f"window={self.window!r}, sigma={self.sigma}, normalize={self.normalize}, num_bins={self.num_bins}"

    def angle_to_bin(self, angles: Tensor) -> Tensor:
        """(N,) radians -> (N,) int64 bin index floor((deg + 90) / omega) mod 180."""
        deg = angles * (180 / math.pi)
        return torch.floor((deg + ANGLE_OFFSET_DEG) / self.omega).long() % self.num_bins

    def window_values(self, aspect_ratios: Tensor | None, n: int, device, dtype) -> Tensor:
        """(N, 180) smoothing values for offsets d = -90..89."""
        if self.window == "gaussian":
            d = torch.arange(-self.num_bins // 2, self.num_bins // 2, device=device, dtype=dtype)
            return torch.exp(-d.pow(2) / (2 * self.sigma ** 2)).expand(n, -1)
        if aspect_ratios is None:
            raise ValueError("AR-CSL (window='aspect_ratio') needs the aspect ratios of the targets")
        return arcsl_window(aspect_ratios.to(dtype), normalize=self.normalize, omega=self.omega)

    def encode(self, angles: Tensor, aspect_ratios: Tensor | None = None) -> Tensor:
        """(N,) radians (le90) and (N,) aspect ratios -> (N, 180) soft labels.

        label[(idx + d) mod 180] = window(d), d = -90..89, i.e. the window is centred on the target bin
        and wraps around the circle.
        """
        angles = angles.reshape(-1)
        n = angles.numel()
        dtype = angles.dtype if angles.is_floating_point() else torch.float32
        if aspect_ratios is not None:
            aspect_ratios = aspect_ratios.reshape(-1)
            if aspect_ratios.numel() != n:
                raise ValueError(f"got {n} angles but {aspect_ratios.numel()} aspect ratios")
        values = self.window_values(aspect_ratios, n, angles.device, dtype)
        idx = self.angle_to_bin(angles)
        d = torch.arange(-self.num_bins // 2, self.num_bins // 2, device=angles.device)
        positions = (idx[:, None] + d[None, :]) % self.num_bins
        labels = torch.zeros(n, self.num_bins, device=angles.device, dtype=dtype)
        return labels.scatter(1, positions, values.to(dtype))

    def decode(self, logits: Tensor) -> Tensor:
        """(..., 180) logits -> (...,) radians at the centre of the arg-max bin, in [-89.5, 89.5] degrees."""
        idx = logits.argmax(dim=-1)
        deg = ((idx.to(logits.dtype) + 0.5) * self.omega) % ANGLE_RANGE_DEG - ANGLE_OFFSET_DEG
        return deg * (math.pi / 180)


class RegressionAngleCoder(nn.Module):
    """One-logit angle regression of plain Rotated Deformable DETR (reference A.7).

    decode: angle = (sigmoid(t) - 0.5) * pi in (-pi/2, pi/2). encode is its inverse, (N,) -> (N, 1)
    logits, clamped so that the +-pi/2 ends stay finite. The regression variant's losses (5-dim L1,
    rotated IoU) use the decoded angle directly; encode exists for the shared interface and the tests.
    """

    num_bins = 1

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def encode(self, angles: Tensor, aspect_ratios: Tensor | None = None) -> Tensor:
        p = (angles.reshape(-1) / math.pi + 0.5).clamp(self.eps, 1 - self.eps)
        return torch.log(p / (1 - p))[:, None]

    def decode(self, logits: Tensor) -> Tensor:
        if logits.shape[-1] != 1:
            raise ValueError(f"regression angle logits must have last dim 1, got {tuple(logits.shape)}")
        return (logits[..., 0].sigmoid() - 0.5) * math.pi


def build_angle_coder(kind: str = "arcsl", **kwargs) -> nn.Module:
    """kind: 'arcsl' (AR-CSL, normalised; ARS-DETR default), 'csl' (Gaussian, sigma 6), 'regression'.

    Extra keyword arguments go to the coder (e.g. ``sigma=`` for 'csl', ``normalize=`` for 'arcsl').
    """
    if kind == "arcsl":
        return CSLCoder(window="aspect_ratio", normalize=kwargs.pop("normalize", True), **kwargs)
    if kind == "csl":
        return CSLCoder(window="gaussian", sigma=kwargs.pop("sigma", 6.0), **kwargs)
    if kind == "regression":
        return RegressionAngleCoder(**kwargs)
    raise ValueError(f"unknown angle coder {kind!r}; expected 'arcsl', 'csl' or 'regression'")
