"""Oriented rectangles, the objects of a scene, and non-overlapping placement.

Object frame: the object's heading points "up" (towards -y) in its own frame, ``w`` is the extent across
the heading and ``h`` the extent along it. ``angle`` rotates the object frame into the image (x right,
y down, so a positive angle turns clockwise on screen). The label polygon is the rectangle's corners in
the order top-left, top-right, bottom-right, bottom-left of the object frame, i.e. the first edge is the
object's front (nose of a plane, bow of a ship), as DOTA annotators draw them.

Image coordinates put pixel centres on integers (OpenCV's convention): a pixel belongs to an object when
its centre lies inside the rectangle.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Corners of the unit rectangle in the object frame, TL, TR, BR, BL (y down, heading towards -y).
_UNIT_CORNERS = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])


def rect_corners(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    """Corners ``(4, 2)`` float64 of an oriented rectangle, TL, TR, BR, BL in the object frame."""
    c, s = np.cos(angle), np.sin(angle)
    local = _UNIT_CORNERS * np.array([w, h])
    rot = np.array([[c, -s], [s, c]])
    return local @ rot.T + np.array([cx, cy])


def heading_vector(angle: float) -> np.ndarray:
    """Unit vector ``(2,)`` of the object's front direction in image coordinates."""
    return np.array([np.sin(angle), -np.cos(angle)])


def local_to_image(cx, cy, angle, lx, ly):
    """Object-frame offsets (arrays) to image coordinates; returns ``(x, y)``."""
    c, s = np.cos(angle), np.sin(angle)
    return cx + c * lx - s * ly, cy + s * lx + c * ly


@dataclass
class SceneObject:
    """One rendered thing: a labelled object (``label`` is a DOTA class) or a distractor (``label`` None).

    Attributes:
        kind: renderer name in ``objects.RENDERERS`` (``"plane"``, ``"building"``, ...).
        label: DOTA class name written to the label file, or ``None`` for unlabelled scenery.
        cx, cy: centre in image pixels.
        w, h: extent across / along the heading, pixels.
        angle: rotation of the object frame into the image, radians.
        elevation: height above ground in pixels of shadow length (0: flat, no shadow).
        shadow: ``"swept"`` (solid from the ground up: buildings, tanks, vehicles) or ``"cast"`` (raised
            above the ground: a plane's silhouette, a bridge deck).
        style: renderer options (colours, sub-type), drawn at placement time so rendering needs no rng.
    """

    kind: str
    label: str | None
    cx: float
    cy: float
    w: float
    h: float
    angle: float
    elevation: float = 0.0
    shadow: str = "swept"
    style: dict = field(default_factory=dict)

    def corners(self) -> np.ndarray:
        return rect_corners(self.cx, self.cy, self.w, self.h, self.angle)

    def polygon(self) -> np.ndarray:
        """Label polygon ``(8,)`` float64: x1 y1 ... x4 y4, TL TR BR BL of the object frame."""
        return self.corners().reshape(8)


class Occupancy:
    """Placed oriented rectangles, with an exact overlap test (separating axis theorem).

    ``fits(corners, margin)`` is vectorised over everything placed so far: a bounding-circle test first
    removes far rectangles, then the four candidate axes (two per rectangle) are checked for the near ones.
    A ``margin`` (pixels) keeps a gap: the candidate must be separated by at least that much on some axis.
    """

    def __init__(self):
        self._corners = np.zeros((0, 4, 2))
        self._centres = np.zeros((0, 2))
        self._radii = np.zeros(0)
        self._chunks: list[np.ndarray] = []

    def __len__(self) -> int:
        self._flush()
        return len(self._corners)

    def _flush(self) -> None:
        if self._chunks:
            new = np.stack(self._chunks)
            self._chunks = []
            self._corners = np.concatenate([self._corners, new])
            centres = new.mean(axis=1)
            self._centres = np.concatenate([self._centres, centres])
            self._radii = np.concatenate([self._radii, np.linalg.norm(new - centres[:, None], axis=2).max(1)])

    def add(self, corners: np.ndarray) -> None:
        self._chunks.append(np.asarray(corners, np.float64).reshape(4, 2))

    def fits(self, corners: np.ndarray, margin: float = 0.0) -> bool:
        self._flush()
        if not len(self._corners):
            return True
        corners = np.asarray(corners, np.float64).reshape(4, 2)
        centre = corners.mean(0)
        radius = np.linalg.norm(corners - centre, axis=1).max()
        near = np.linalg.norm(self._centres - centre, axis=1) < self._radii + radius + margin
        if not near.any():
            return True
        others = self._corners[near]  # (K, 4, 2)
        # Axes: the two edge normals of the candidate and of each near rectangle.
        cand_axes = _edge_normals(corners[None])[0]  # (2, 2)
        other_axes = _edge_normals(others)  # (K, 2, 2)
        axes = np.concatenate([np.broadcast_to(cand_axes, (len(others), 2, 2)), other_axes], axis=1)  # (K,4,2)
        proj_c = np.einsum("kad,pd->kap", axes, corners)  # (K, 4 axes, 4 points)
        proj_o = np.einsum("kad,kpd->kap", axes, others)
        separated = (proj_c.min(2) >= proj_o.max(2) + margin) | (proj_o.min(2) >= proj_c.max(2) + margin)
        return bool(separated.any(axis=1).all())


def _edge_normals(corners: np.ndarray) -> np.ndarray:
    """Unit normals ``(K, 2, 2)`` of the first two edges of rectangles ``(K, 4, 2)``."""
    e = np.stack([corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 1]], axis=1)
    n = np.stack([-e[..., 1], e[..., 0]], axis=-1)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def inside_image(corners: np.ndarray, width: int, height: int, border: float = 1.0) -> bool:
    """All corners within ``[border, size - 1 - border]``: DOTA labels lie in the image."""
    x, y = corners[:, 0], corners[:, 1]
    return bool((x.min() >= border) & (y.min() >= border) & (x.max() <= width - 1 - border)
                & (y.max() <= height - 1 - border))


_UNIT_GRIDS: dict[int, np.ndarray] = {}


def sample_points(cx, cy, w, h, angle, n: int = 4) -> np.ndarray:
    """``(n*n, 2)`` points on a regular grid covering the rectangle, edges included (surface checks)."""
    if n not in _UNIT_GRIDS:
        t = np.linspace(-0.5, 0.5, n)
        _UNIT_GRIDS[n] = np.stack(np.meshgrid(t, t), axis=-1).reshape(-1, 2)
    c, s = np.cos(angle), np.sin(angle)
    local = _UNIT_GRIDS[n] * (w, h)
    return local @ np.array([[c, s], [-s, c]]) + (cx, cy)


def row_offsets(count: int, pitch: float) -> np.ndarray:
    """Offsets ``(count,)`` of ``count`` slots ``pitch`` apart, centred on 0."""
    return (np.arange(count) - (count - 1) / 2.0) * pitch
