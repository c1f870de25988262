"""The ground of a scene: land cover, water, roads, paved lots and their markings.

``Ground`` owns the background canvas ``(H, W, 3)`` float32 RGB and a surface map ``(H, W)`` uint8 that
says what each pixel is (``LAND``, ``WATER``, ``ROAD``, ``PAVED``). Placement reads the surface map so
that ships float, planes stand on aprons and parking lots do not straddle a road. Nothing painted here is
labelled: roads, lots and water are the context the objects sit in.

Region edges are anti-aliased (``LINE_AA`` masks) so that they look like imagery, not like vector art.
"""
from __future__ import annotations

import cv2
import numpy as np

from .textures import NoiseFields, TextureBank, field_stripes, panel_joints

LAND, WATER, ROAD, PAVED = 0, 1, 2, 3
OUTSIDE = 255  # what ``surface_at`` reports for points outside the image

_SHIFT = 4
_ONE = 1 << _SHIFT


def segment_polygon(p0, p1, width: float) -> np.ndarray:
    """Corners ``(4, 2)`` of the band of ``width`` around the segment ``p0 -> p1``."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-9) * width / 2
    return np.array([p0 + n, p1 + n, p1 - n, p0 - n])


def clip_segment(p0, p1, width: int, height: int, margin: float = 0.0):
    """The part of segment ``p0 -> p1`` inside the image grown by ``margin`` (Liang-Barsky), or ``None``."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    t0, t1 = 0.0, 1.0
    lo, hx, hy = -margin, width - 1 + margin, height - 1 + margin
    for p, q in ((-d[0], p0[0] - lo), (d[0], hx - p0[0]), (-d[1], p0[1] - lo), (d[1], hy - p0[1])):
        if abs(p) < 1e-12:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
    return (p0 + t0 * d, p0 + t1 * d) if t1 > t0 else None


def dashes(p0, p1, dash: float, gap: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Dash segments along ``p0 -> p1``: ``dash`` long, ``gap`` apart."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    length = np.hypot(*(p1 - p0))
    u = (p1 - p0) / max(length, 1e-9)
    return [(p0 + u * t, p0 + u * min(t + dash, length)) for t in np.arange(0, length, dash + gap)]


class Ground:
    """Background canvas and surface map of one scene (see module docstring).

    Attributes:
        canvas: ``(H, W, 3)`` float32 RGB in [0, 255] (values may stray a little before the final clip).
        surface: ``(H, W)`` uint8 surface codes.
        textures: the scene's ``TextureBank``.
    """

    def __init__(self, rng: np.random.Generator, width: int, height: int, gsd: float):
        self.rng = rng
        self.width, self.height, self.gsd = width, height, gsd
        self.textures = TextureBank(rng, NoiseFields.build(rng, height, width, gsd))
        self.canvas = np.zeros((height, width, 3), np.float32)
        self.surface = np.full((height, width), LAND, np.uint8)

    # --- masks ---------------------------------------------------------------------------------
    def _bbox(self, pts: np.ndarray, pad: float = 2.0):
        x0 = max(int(np.floor(pts[:, 0].min() - pad)), 0)
        y0 = max(int(np.floor(pts[:, 1].min() - pad)), 0)
        x1 = min(int(np.ceil(pts[:, 0].max() + pad)) + 1, self.width)
        y1 = min(int(np.ceil(pts[:, 1].max() + pad)) + 1, self.height)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def polygon_area(self, pts) -> "Area | None":
        """The pixels a polygon covers, anti-aliased; ``None`` when it misses the image."""
        pts = np.asarray(pts, float).reshape(-1, 2)
        box = self._bbox(pts)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        fixed = np.round((pts - (x0, y0)) * _ONE).astype(np.int32)
        cv2.fillPoly(mask, [fixed], 255, cv2.LINE_AA, _SHIFT)
        return Area(box, mask, self.width)

    # --- regions -------------------------------------------------------------------------------
    def fill(self, kind: str) -> None:
        """Cover the whole canvas with one texture (the first step of every scene)."""
        self.canvas[:] = self.textures.texture(kind)

    def mix_land(self, kind: str, threshold: float, softness: float = 0.3) -> None:
        """Blend ``kind`` in where the coarse hue noise exceeds ``threshold``; finer noise roughens the
        border, as the edge of a dry patch or a built-up area is ragged, not a smooth blob."""
        f = self.textures.fields
        level = f.hue + 0.3 * f.medium + 0.08 * f.fine
        cover = np.clip((level - threshold) * np.float32(1 / softness), 0, 1)[..., None]
        tex = self.textures.texture(kind)
        self.canvas -= tex
        self.canvas *= 1 - cover
        self.canvas += tex

    def paint_polygon(self, pts, kind: str, code: int | None = None, tint=None, pattern=None):
        """Paint a polygon with texture ``kind``; set the surface code where coverage > 1/2.

        ``pattern``: optional callable ``(x, y) -> float32`` of pixel coordinates (arrays) multiplying the
        texture (crop rows, slab joints). Returns the painted ``Area`` or None.
        """
        area = self.polygon_area(pts)
        if area is None or area.empty:
            return None
        tex = self.textures.texture(kind, area.where, tint=tint)
        if pattern is not None:
            tex *= pattern(*area.xy())[..., None]
        area.blend(self.canvas, tex)
        if code is not None:
            area.set(self.surface, code)
        return area

    def paint_field(self, pts, angle: float) -> None:
        """A crop field: ``field`` texture with rows along ``angle``, rows 1-3 m apart."""
        period = self.rng.uniform(1.0, 3.0) / self.gsd
        contrast = self.rng.uniform(0.03, 0.1)
        tint = self.rng.uniform(0.85, 1.15, 3)
        self.paint_polygon(pts, "field", LAND, tint=tint,
                           pattern=lambda x, y: field_stripes(x, y, period, angle, contrast))

    def paint_slabs(self, pts, kind: str, angle: float, slab_m: float, code: int = PAVED, tint=None) -> None:
        """Paved area of square slabs ``slab_m`` metres with darker joints (aprons, quays)."""
        period = slab_m / self.gsd
        self.paint_polygon(pts, kind, code, tint=tint,
                           pattern=lambda x, y: 1.0 - 0.12 * panel_joints(x, y, period, angle))

    # --- strokes -------------------------------------------------------------------------------
    def strokes(self, segments, width: float, colour, opacity: float = 1.0) -> None:
        """Anti-aliased lines (markings): ``segments`` is a list of ``(p0, p1)`` pairs in pixels."""
        if not segments:
            return
        pts = np.concatenate([np.asarray(s, float).reshape(-1, 2) for s in segments])
        box = self._bbox(pts, pad=width + 2)
        if box is None:
            return
        x0, y0, x1, y1 = box
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        # A line narrower than a pixel is drawn one pixel wide and faded instead.
        thickness = max(1, int(round(width)))
        for p0, p1 in segments:
            a = np.round((np.asarray(p0, float) - (x0, y0)) * _ONE).astype(np.int64)
            b = np.round((np.asarray(p1, float) - (x0, y0)) * _ONE).astype(np.int64)
            cv2.line(mask, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 255, thickness, cv2.LINE_AA, _SHIFT)
        Area(box, mask, self.width, opacity * min(width, 1.0)).blend(self.canvas, colour)

    # --- composite features --------------------------------------------------------------------
    def road(self, p0, p1, width: float, lanes: int = 2, kind: str = "asphalt", centre=(230, 230, 225),
             edge=(225, 225, 220), ppm: float = 3.0) -> np.ndarray:
        """A straight road with edge lines and dashed lane lines; returns its corners ``(4, 2)``."""
        poly = segment_polygon(p0, p1, width)
        self.paint_polygon(poly, kind, ROAD)
        # Markings only for the visible stretch (roads are given far beyond the image).
        seg = clip_segment(p0, p1, self.width, self.height, margin=width)
        if seg is None:
            return poly
        p0, p1 = seg
        d = (p1 - p0) / max(np.hypot(*(p1 - p0)), 1e-9)
        n = np.array([-d[1], d[0]])
        lw = 0.15 * ppm
        inset = width / 2 - 0.6 * ppm
        self.strokes([(p0 + n * inset, p1 + n * inset), (p0 - n * inset, p1 - n * inset)], lw, edge, 0.8)
        for i in range(1, lanes):
            off = -width / 2 + i * width / lanes
            colour = centre if 2 * i == lanes else edge
            self.strokes(dashes(p0 + n * off, p1 + n * off, 3 * ppm, 6 * ppm), lw, colour, 0.85)
        return poly

    def wake(self, stern, direction, length: float, width: float) -> None:
        """Foam behind a moving ship: a widening, fading wedge from ``stern`` along ``direction``."""
        stern, direction = np.asarray(stern, float), np.asarray(direction, float)
        n = np.array([-direction[1], direction[0]])
        tip = stern + direction * length
        pts = np.array([stern + n * width * 0.4, tip + n * width * 1.2, tip - n * width * 1.2, stern - n * width * 0.4])
        area = self.polygon_area(pts)
        if area is None or area.empty:
            return
        x, y = area.xy()
        t = ((x - stern[0]) * direction[0] + (y - stern[1]) * direction[1]) / length
        fade = np.clip(1 - t, 0, 1) ** 2 * 0.3
        on_water = area.pick(self.surface) == WATER  # foam stays off the quay
        area.cover = area.cover * (fade * on_water).astype(np.float32)
        area.blend(self.canvas, (190, 200, 200))

    def surface_at(self, pts) -> np.ndarray:
        """Surface codes ``(N,)`` at points ``(N, 2)``; ``OUTSIDE`` for points off the image."""
        pts = np.asarray(pts, float).reshape(-1, 2)
        x = np.round(pts[:, 0]).astype(int)
        y = np.round(pts[:, 1]).astype(int)
        ok = (x >= 0) & (y >= 0) & (x < self.width) & (y < self.height)
        out = np.full(len(pts), OUTSIDE, np.uint8)
        out[ok] = self.surface[y[ok], x[ok]]
        return out


class Area:
    """The pixels a mask covers, with their coverage in [0, 1].

    Held densely (a box of the image, when the mask fills much of its bounding box) or sparsely (flat
    pixel indices, for a diagonal road whose bounding box is the whole image but whose pixels are a few
    percent of it): each form is the cheaper one for its case. ``where`` indexes the image either way.
    """

    def __init__(self, box, mask: np.ndarray, width: int, opacity: float = 1.0):
        x0, y0, x1, y1 = box
        count = cv2.countNonZero(mask)
        self.empty = count == 0
        self.dense = count > 0.3 * mask.size
        self.width = width
        scale = np.float32(opacity / 255)
        if self.dense:
            self.where = (slice(y0, y1), slice(x0, x1))
            self.cover = mask.astype(np.float32) * scale
            self._xy = (np.arange(x0, x1, dtype=np.float32)[None, :], np.arange(y0, y1, dtype=np.float32)[:, None])
        else:
            sel = np.flatnonzero(mask)
            bw = x1 - x0
            self.where = (sel // bw + y0) * width + (sel % bw + x0)
            self.cover = mask.reshape(-1)[sel].astype(np.float32) * scale
            self._xy = ((self.where % width).astype(np.float32), (self.where // width).astype(np.float32))

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates ``(x, y)`` of the covered pixels (broadcastable arrays)."""
        return self._xy

    def pick(self, image: np.ndarray) -> np.ndarray:
        """Values of an ``(H, W, ...)`` array at the covered pixels."""
        if self.dense:
            return image[self.where]
        return image.reshape((-1,) + image.shape[2:])[self.where]

    def blend(self, canvas: np.ndarray, colour) -> None:
        """``canvas = canvas * (1 - cover) + colour * cover``; colour (3,) or one per covered pixel."""
        colour = np.asarray(colour, np.float32)
        if self.dense:
            region = canvas[self.where]
            region -= colour
            region *= (1 - self.cover)[..., None]
            region += colour
        else:
            flat = canvas.reshape(-1, 3)
            m = self.cover[:, None]
            flat[self.where] = flat[self.where] * (1 - m) + colour * m

    def set(self, surface: np.ndarray, code: int) -> None:
        """Set ``surface`` to ``code`` where coverage exceeds one half."""
        if self.dense:
            surface[self.where][self.cover > 0.5] = code
        else:
            surface.reshape(-1)[self.where[self.cover > 0.5]] = code
