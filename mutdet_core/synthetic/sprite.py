"""Sprites: objects drawn upright in their own frame, then rotated into the scene with their shadow.

A renderer draws an object with its heading up into a ``Sprite`` ``s`` times finer than the image
(supersampling, so that a 4 x 9 px car still has a windscreen). ``rasterize`` maps it into the image
with one affine warp at the same fine scale, then averages ``s x s`` blocks (``INTER_AREA``): that is
exact box-filter anti-aliasing, and the footprint of the object ends where its label rectangle ends.

Colours are premultiplied by alpha before warping, so interpolation never drags the (black) outside
colour into an object's edge.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .layout import SceneObject

_SHIFT = 4  # cv2 drawing with 4 fractional bits: sub-pixel precise vertices
_ONE = 1 << _SHIFT


def supersampling(w: float, h: float) -> int:
    """Fine-scale factor for an object of ``w x h`` image pixels: tiny objects get more sub-pixels."""
    small = min(w, h)
    if small < 8:
        return 4
    if small < 24:
        return 3
    return 2 if max(w, h) < 240 else 1


class Sprite:
    """Drawing surface for one object, in object-frame pixel units.

    Coordinates passed to the drawing methods are image-pixel distances in the object frame, with the
    origin at the rectangle's top-left corner: ``x`` in ``[0, w]`` across the heading, ``y`` in ``[0, h]``
    along it, ``y = 0`` at the front. ``rgb`` is ``(Hs, Ws, 3)`` float32 and ``alpha`` ``(Hs, Ws)``
    float32 in [0, 1] with ``Hs = round(h * s)``, ``Ws = round(w * s)``.
    """

    def __init__(self, w: float, h: float, s: int):
        self.w, self.h, self.s = float(w), float(h), int(s)
        self.ws, self.hs = max(1, int(round(w * s))), max(1, int(round(h * s)))
        self.sx, self.sy = self.ws / self.w, self.hs / self.h
        self.rgb = np.zeros((self.hs, self.ws, 3), np.float32)
        self.alpha = np.zeros((self.hs, self.ws), np.float32)
        self._grid = None

    # --- coordinates -------------------------------------------------------------------------
    def _fixed(self, pts) -> np.ndarray:
        """Object-frame points to fixed-point sprite pixel coordinates (pixel centres on integers)."""
        p = np.asarray(pts, np.float64).reshape(-1, 2) * (self.sx, self.sy) - 0.5
        return np.round(p * _ONE).astype(np.int32)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Object-frame coordinates ``(x, y)`` of every sprite pixel centre, each ``(Hs, Ws)`` float32."""
        if self._grid is None:
            x = (np.arange(self.ws, dtype=np.float32) + 0.5) / np.float32(self.sx)
            y = (np.arange(self.hs, dtype=np.float32) + 0.5) / np.float32(self.sy)
            self._grid = np.meshgrid(x, y)
        return self._grid

    # --- drawing -----------------------------------------------------------------------------
    def poly(self, pts, colour, solid: bool = True) -> None:
        """Fill a polygon; ``solid`` also marks it as part of the object's footprint (alpha 1)."""
        p = [self._fixed(pts)]
        cv2.fillPoly(self.rgb, p, tuple(float(c) for c in colour), cv2.LINE_8, _SHIFT)
        if solid:
            cv2.fillPoly(self.alpha, p, 1.0, cv2.LINE_8, _SHIFT)

    def rect(self, x0, y0, x1, y1, colour, solid: bool = True) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], colour, solid)

    def ellipse(self, cx, cy, ax, ay, colour, solid: bool = True, angle_deg: float = 0.0) -> None:
        """Filled ellipse with half-axes ``ax`` (across) and ``ay`` (along)."""
        centre = tuple(int(v) for v in self._fixed([(cx, cy)])[0])
        axes = (max(int(round(ax * self.sx * _ONE)), 1), max(int(round(ay * self.sy * _ONE)), 1))
        col = tuple(float(c) for c in colour)
        cv2.ellipse(self.rgb, centre, axes, angle_deg, 0, 360, col, -1, cv2.LINE_8, _SHIFT)
        if solid:
            cv2.ellipse(self.alpha, centre, axes, angle_deg, 0, 360, 1.0, -1, cv2.LINE_8, _SHIFT)

    def line(self, p0, p1, width: float, colour) -> None:
        """A straight stroke ``width`` object px wide (at least one sprite pixel); never changes alpha."""
        a, b = self._fixed([p0, p1])
        t = max(1, int(round(width * self.s)))
        cv2.line(self.rgb, tuple(int(v) for v in a), tuple(int(v) for v in b),
                 tuple(float(c) for c in colour), t, cv2.LINE_8, _SHIFT)

    def shade(self, factor: np.ndarray, where: np.ndarray | None = None) -> None:
        """Multiply colours by ``factor`` ``(Hs, Ws)``, optionally only where the boolean mask is set."""
        f = factor if where is None else np.where(where, factor, 1.0).astype(np.float32)
        self.rgb *= f[..., None]


@dataclass
class Patch:
    """An object rasterised into the image: rows ``y0:y0+h``, columns ``x0:x0+w``.

    premult: ``(h, w, 3)`` float32 colour premultiplied by coverage; alpha: ``(h, w)`` float32 coverage.
    """

    x0: int
    y0: int
    premult: np.ndarray
    alpha: np.ndarray


def rasterize(obj: SceneObject, sprite: Sprite, width: int, height: int) -> Patch | None:
    """Warp ``sprite`` (drawn for ``obj``) into image coordinates; ``None`` when entirely outside."""
    corners = obj.corners()
    x0 = int(np.floor(corners[:, 0].min())) - 1
    y0 = int(np.floor(corners[:, 1].min())) - 1
    x1 = int(np.ceil(corners[:, 0].max())) + 2
    y1 = int(np.ceil(corners[:, 1].max())) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    s = sprite.s
    c, sn = np.cos(obj.angle), np.sin(obj.angle)
    # sprite pixel (u, v) -> object frame (centre origin) -> image -> fine patch pixel (U, V).
    to_local = np.array([[1 / sprite.sx, 0, 0.5 / sprite.sx - obj.w / 2],
                         [0, 1 / sprite.sy, 0.5 / sprite.sy - obj.h / 2], [0, 0, 1]])
    to_image = np.array([[c, -sn, obj.cx], [sn, c, obj.cy], [0, 0, 1]])
    to_patch = np.array([[s, 0, (0.5 - x0) * s - 0.5], [0, s, (0.5 - y0) * s - 0.5], [0, 0, 1]])
    m = (to_patch @ to_image @ to_local)[:2]
    src = np.concatenate([sprite.rgb * sprite.alpha[..., None], sprite.alpha[..., None]], axis=2)
    fine = cv2.warpAffine(src, m, ((x1 - x0) * s, (y1 - y0) * s), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if s > 1:
        fine = cv2.resize(fine, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    fine = fine.reshape(y1 - y0, x1 - x0, 4)
    return Patch(x0, y0, np.ascontiguousarray(fine[..., :3]), np.ascontiguousarray(fine[..., 3]))


def composite(canvas: np.ndarray, patch: Patch) -> None:
    """Paint ``patch`` over ``canvas`` ``(H, W, 3)`` float32 in place (premultiplied "over")."""
    h, w = patch.alpha.shape
    region = canvas[patch.y0:patch.y0 + h, patch.x0:patch.x0 + w]
    region *= (1.0 - patch.alpha)[..., None]
    region += patch.premult


def accumulate_shadow(shadow_map: np.ndarray, patch: Patch, offset: tuple[float, float], mode: str) -> None:
    """Add ``patch``'s shadow to ``shadow_map`` ``(H, W)`` float32 (max, so overlapping shadows do not
    darken twice): its footprint moved by ``offset`` (dx, dy) pixels.

    ``"swept"``: the footprint dragged along the whole offset (a solid standing on the ground: the
    shadow starts at its base). ``"cast"``: only the footprint at the full offset (a raised deck or a
    plane on its gear). The shadow edge is softened by a small blur (penumbra).
    """
    dx, dy = float(offset[0]), float(offset[1])
    if abs(dx) < 0.3 and abs(dy) < 0.3:
        return
    pad = int(np.ceil(max(abs(dx), abs(dy)))) + 2
    a = cv2.copyMakeBorder(patch.alpha, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    if mode == "swept":
        # The dilation of the footprint by the segment 0 -> offset is the union of all shifted copies.
        k = 2 * pad + 1
        kernel = np.zeros((k, k), np.uint8)
        cv2.line(kernel, (pad, pad), (pad - int(round(dx)), pad - int(round(dy))), 1, 1)
        shadow = cv2.dilate(a, kernel)
    elif mode == "cast":
        m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        shadow = cv2.warpAffine(a, m, (a.shape[1], a.shape[0]), flags=cv2.INTER_LINEAR)
    else:
        raise ValueError(f"unknown shadow mode {mode!r}")
    shadow = cv2.GaussianBlur(shadow, (0, 0), 0.8)
    x0, y0 = patch.x0 - pad, patch.y0 - pad
    H, W = shadow_map.shape
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + shadow.shape[1], W), min(y0 + shadow.shape[0], H)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    region = shadow_map[cy0:cy1, cx0:cx1]
    np.maximum(region, shadow[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0], out=region)
