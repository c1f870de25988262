"""Renderers of unlabelled scenery: buildings, trees, swimming pools.

They are what makes a detector earn its keep: rectangular roofs next to parking lots, round crowns next
to storage tanks, blue rectangles next to tennis courts. Same conventions as ``objects.py``.
"""
from __future__ import annotations

import cv2
import numpy as np

from .sprite import Sprite


def render_building(sp: Sprite, style: dict) -> None:
    """Flat roof (parapet, rooftop units), gable roof (two lit/unlit halves) or hip roof (four faces)."""
    rng = np.random.default_rng(style.get("seed", 0))
    w, h = sp.w, sp.h
    ppm = style.get("ppm", 3.0)
    roof = np.asarray(style.get("roof_colour", (160, 150, 140)), np.float32)
    lx, ly = style.get("light", (0.0, -1.0))
    sp.rect(0, 0, w, h, roof)
    kind = style.get("roof", "flat")
    x, y = sp.grid()
    if kind == "flat":
        edge = max(0.5 * ppm, 0.8)
        border = (x < edge) | (x > w - edge) | (y < edge) | (y > h - edge)
        sp.shade(np.full(x.shape, 1.12, np.float32), where=border)
        if style.get("ribs", False):
            for yy in np.arange(0, h, 1.5 * ppm):
                sp.line((edge, yy), (w - edge, yy), 0.12 * ppm, roof * 0.93)
        for _ in range(int(rng.integers(0, 6))):
            bw, bh = rng.uniform(1.5, 4.0, 2) * ppm
            bx = rng.uniform(edge, max(w - bw - edge, edge + 0.1))
            by = rng.uniform(edge, max(h - bh - edge, edge + 0.1))
            o = 0.6 * ppm  # the unit's own shadow falls away from the sun
            sp.rect(bx - o * lx, by - o * ly, bx + bw - o * lx, by + bh - o * ly, roof * 0.7, solid=False)
            sp.rect(bx, by, bx + bw, by + bh, np.minimum(roof * 1.15, 245), solid=False)
    else:
        # Which face a roof point lies on: the nearest eave (gable: only the long sides slope).
        d = np.stack([x, w - x, y, h - y])
        if kind == "gable":
            long_y = h >= w
            d = d[:2] if long_y else d[2:]
            normals = np.array([(-1, 0), (1, 0)]) if long_y else np.array([(0, -1), (0, 1)])
        else:
            normals = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])
        face = np.argmin(d, axis=0)
        lit = normals[:, 0] * lx + normals[:, 1] * ly
        sp.shade((1.0 + 0.22 * lit[face]).astype(np.float32))
        tiles = 1.0 + 0.04 * np.sin(2 * np.pi * np.where(face < 2, x, y) / max(0.6 * ppm, 1.0))
        sp.shade(tiles.astype(np.float32))


def render_tree(sp: Sprite, style: dict) -> None:
    """A crown: an irregular disc, brighter on the sun's side, with leafy speckle."""
    rng = np.random.default_rng(style.get("seed", 0))
    w, h = sp.w, sp.h
    base = np.asarray(style.get("leaf", (52, 78, 44)), np.float32)
    lx, ly = style.get("light", (0.0, -1.0))
    n = 18
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = 1.0 - rng.uniform(0, 0.22, n)
    pts = np.stack([w / 2 * (1 + rad * np.cos(ang)), h / 2 * (1 + rad * np.sin(ang))], 1)
    sp.poly(pts, base)
    x, y = sp.grid()
    dx, dy = (x - w / 2) / (w / 2), (y - h / 2) / (h / 2)
    speck = rng.standard_normal(x.shape).astype(np.float32)
    speck = cv2.GaussianBlur(speck, (0, 0), max(sp.s * 0.7, 0.5))
    sp.shade((1.0 + 0.35 * (dx * lx + dy * ly) + 0.25 * speck).astype(np.float32))


def render_pool(sp: Sprite, style: dict) -> None:
    """A swimming pool: light coping around cyan water that deepens towards one end."""
    w, h = sp.w, sp.h
    ppm = style.get("ppm", 3.0)
    sp.rect(0, 0, w, h, (210, 208, 200))
    c = max(0.6 * ppm, 0.6)
    sp.rect(c, c, w - c, h - c, style.get("water", (70, 170, 200)), solid=False)
    x, y = sp.grid()
    deep = 1.0 - 0.25 * np.clip(y / h, 0, 1)
    inside = (x > c) & (x < w - c) & (y > c) & (y < h - c)
    sp.shade(deep.astype(np.float32), where=inside)
