"""Procedural ground textures: grass, fields, soil, sand, asphalt, concrete, water, urban ground.

Every texture is a base colour modulated by a few noise fields. The fields are computed once per scene
(``NoiseFields``) at full image size and sliced for each painted region: four cv2 resizes of small random
grids cost a few milliseconds, whereas a fresh fractal per road or parking lot would dominate the time of a
scene. Neighbouring regions of different surfaces share the same noise but not the same colour or
contrast, which is invisible in practice.

Colours are RGB float32 in [0, 255]. Nothing here reads global state: the numpy ``Generator`` passed in
is the only source of randomness, so a scene is reproducible from its seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Base colours (RGB) sampled from DOTA / Google Earth imagery, with the spread of a per-scene jitter.
PALETTE = {
    "grass": ((92, 112, 62), 14),
    "dry_grass": ((136, 132, 92), 12),
    "field": ((120, 128, 76), 18),
    "soil": ((150, 128, 100), 16),
    "sand": ((196, 180, 146), 14),
    "asphalt": ((88, 90, 92), 12),
    "asphalt_old": ((122, 120, 116), 12),
    "concrete": ((178, 176, 168), 12),
    "water": ((34, 58, 64), 10),
    "urban": ((124, 119, 108), 12),
}

# (coarse, medium, fine) relative contrast per surface: how strongly each noise field modulates the base
# colour. Water is smooth; grass and soil are patchy; asphalt has fine grain and faint stains.
CONTRAST = {
    "grass": (0.12, 0.09, 0.09),
    "dry_grass": (0.12, 0.08, 0.07),
    "field": (0.10, 0.06, 0.06),
    "soil": (0.10, 0.07, 0.06),
    "sand": (0.07, 0.05, 0.04),
    "asphalt": (0.05, 0.04, 0.07),
    "asphalt_old": (0.06, 0.05, 0.06),
    "concrete": (0.04, 0.03, 0.035),
    "water": (0.07, 0.03, 0.03),
    "urban": (0.07, 0.05, 0.05),
}
# Absolute RGB shift per unit of the hue field: vegetation turns yellow (dry) or deep green, water
# darker and bluer in deep parts, greener in shallow ones.
HUE_SHIFT = {"grass": (14.0, 6.0, -3.0), "dry_grass": (10.0, 5.0, -2.0), "field": (12.0, 6.0, -3.0),
             "water": (-2.0, 3.0, 4.0)}


def fractal_noise(rng: np.random.Generator, height: int, width: int, cell: float, octaves: int = 3,
                  persistence: float = 0.5) -> np.ndarray:
    """Value noise ``(height, width)`` float32, about zero mean and unit standard deviation.

    Octave ``k`` is a random grid with ``cell / 2**k`` px spacing, upsampled bicubically; amplitudes fall
    by ``persistence`` per octave. A random sub-cell offset keeps grid lines of octaves from aligning.
    Smooth noise (finest cell >= 8 px) is built at a quarter or half of the size and upsampled once:
    the same look for a fraction of the cost.
    """
    finest = cell / 2 ** (octaves - 1)
    work = 4 if finest >= 16 else 2 if finest >= 8 else 1
    if work > 1:
        small = fractal_noise(rng, -(-height // work) + 1, -(-width // work) + 1, cell / work, octaves, persistence)
        return cv2.resize(small, (small.shape[1] * work, small.shape[0] * work),
                          interpolation=cv2.INTER_LINEAR)[:height, :width].copy()
    acc = np.zeros((height, width), np.float32)
    amp = 1.0
    for k in range(octaves):
        c = max(cell / 2 ** k, 1.0)
        gh, gw = int(np.ceil(height / c)) + 3, int(np.ceil(width / c)) + 3
        grid = rng.standard_normal((gh, gw), dtype=np.float32)
        up = cv2.resize(grid, (int(gw * c), int(gh * c)), interpolation=cv2.INTER_CUBIC)
        oy, ox = rng.integers(0, max(int(c), 1), size=2)
        acc += amp * up[oy:oy + height, ox:ox + width]
        amp *= persistence
    std = float(acc[::7, ::7].std()) or 1.0
    return acc / std


@dataclass
class NoiseFields:
    """Shared noise of one scene: ``stack`` ``(H, W, 4)`` float32, each channel of unit deviation.

    Channels: coarse (~60 m blobs: patchy grass, water colour drift), medium (~12 m), fine (~2 m texture
    plus per-pixel grain) and hue (an independent ~90 m field that shifts colour, e.g. green to dry).
    One interleaved array lets a texture be a single ``cv2.transform`` of it.
    """

    stack: np.ndarray

    coarse = property(lambda self: self.stack[..., 0])
    medium = property(lambda self: self.stack[..., 1])
    fine = property(lambda self: self.stack[..., 2])
    hue = property(lambda self: self.stack[..., 3])

    @classmethod
    def build(cls, rng: np.random.Generator, height: int, width: int, gsd: float) -> "NoiseFields":
        px = lambda metres: max(metres / gsd, 2.0)  # noqa: E731  metres to pixels at this scene's gsd
        coarse = fractal_noise(rng, height, width, px(60.0), octaves=3)
        medium = fractal_noise(rng, height, width, px(12.0), octaves=2)
        fine = fractal_noise(rng, height, width, px(2.0), octaves=1)
        fine *= np.float32(0.6)
        fine += rng.standard_normal((height, width), dtype=np.float32) * np.float32(0.8)
        hue = fractal_noise(rng, height, width, px(90.0), octaves=2)
        return cls(cv2.merge([coarse, medium, fine, hue]))


def jitter_colour(rng: np.random.Generator, rgb, spread: float) -> np.ndarray:
    """``rgb`` plus a brightness shift and a smaller per-channel shift, as float32 (3,)."""
    rgb = np.asarray(rgb, np.float32)
    return np.clip(rgb + rng.normal(0, spread) + rng.normal(0, spread / 3, 3), 0, 255).astype(np.float32)


class TextureBank:
    """Surface textures of one scene, computed on demand for the pixels being painted.

    The per-scene base colour of each kind is drawn the first time the kind is used, so every parking lot of
    a scene has the same asphalt, as in a real town.
    """

    def __init__(self, rng: np.random.Generator, fields: NoiseFields):
        self.rng = rng
        self.fields = fields
        self._base: dict[str, np.ndarray] = {}

    def base_colour(self, kind: str) -> np.ndarray:
        if kind not in self._base:
            rgb, spread = PALETTE[kind]
            self._base[kind] = jitter_colour(self.rng, rgb, spread)
        return self._base[kind]

    def texture(self, kind: str, where=None, tint=None) -> np.ndarray:
        """Texture of ``kind``: ``(H, W, 3)`` for the whole image (``where`` None), ``(h, w, 3)`` for a box
        (``where`` a pair of slices), or ``(n, 3)`` at flat pixel indices ``y * W + x`` (``where`` an
        array). ``tint`` (3,) multiplies the base colour.

        ``rgb = base * (1 + c * coarse + m * medium + f * fine) + hue_shift * hue``: affine in the four
        noise channels, so one 3 x 5 matrix computes it.
        """
        if kind not in PALETTE:
            raise ValueError(f"unknown surface texture {kind!r}; known: {sorted(PALETTE)}")
        base = self.base_colour(kind).astype(np.float64)
        if tint is not None:
            base = base * np.asarray(tint, np.float64)
        c, m, f = CONTRAST[kind]
        matrix = np.zeros((3, 5))
        matrix[:, 0], matrix[:, 1], matrix[:, 2] = base * c, base * m, base * f
        matrix[:, 3] = HUE_SHIFT.get(kind, (0.0, 0.0, 0.0))
        matrix[:, 4] = base
        stack = self.fields.stack
        if where is None or isinstance(where, tuple):
            region = stack if where is None else np.ascontiguousarray(stack[where])
            return cv2.transform(region, matrix.astype(np.float32))
        return stack.reshape(-1, 4)[where] @ matrix[:, :4].T.astype(np.float32) + matrix[:, 4].astype(np.float32)


def field_stripes(x: np.ndarray, y: np.ndarray, period_px: float, angle: float, contrast: float) -> np.ndarray:
    """Multiplicative crop-row pattern at pixel coordinates ``x``, ``y`` (arrays): a sine across ``angle``."""
    u = x * np.float32(np.cos(angle)) + y * np.float32(np.sin(angle))
    return (1.0 + contrast * np.sin(u * np.float32(2 * np.pi / max(period_px, 2.0)))).astype(np.float32)


def panel_joints(x: np.ndarray, y: np.ndarray, period_px: float, angle: float) -> np.ndarray:
    """In [0, 1] at pixel coordinates ``x``, ``y``: 1 on the joint lines of a square slab grid (aprons)."""
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = x * ca + y * sa
    v = -x * sa + y * ca
    p = np.float32(max(period_px, 3.0))
    du = np.abs((u % p) - p / 2)
    dv = np.abs((v % p) - p / 2)
    # Distance to the nearest joint line is p/2 - max(du, dv); a one-pixel-wide soft line.
    return np.clip(1.0 - (p / 2 - np.maximum(du, dv)), 0.0, 1.0)
