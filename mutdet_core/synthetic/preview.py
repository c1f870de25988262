"""Pictures of labelled scenes: oriented boxes drawn class-coloured on a grid of images.

Used for the README figure and by the pipeline to show any DOTA-layout split (real or synthetic) and its
pseudo-labels. The front edge of each box (first two corners, the nose of a plane or the bow of a ship)
is drawn brighter, so a wrong corner order is visible at a glance.
"""
from __future__ import annotations

import colorsys
import zlib
from pathlib import Path

import cv2
import numpy as np

from ..datasets.images import load_image_rgb
from ..datasets.records import ImageRecord

# Distinct, saturated RGB colours for the DOTA classes; other names get a hash-derived hue.
CLASS_COLOURS = {
    "plane": (255, 60, 60), "ship": (255, 200, 0), "small-vehicle": (0, 230, 255), "large-vehicle": (255, 0, 220),
    "storage-tank": (80, 255, 80), "tennis-court": (255, 140, 0), "harbor": (150, 110, 255), "bridge": (255, 255, 255),
    "baseball-diamond": (160, 255, 160), "ground-track-field": (255, 160, 160), "basketball-court": (200, 100, 50),
    "soccer-ball-field": (100, 200, 100), "roundabout": (100, 100, 255), "swimming-pool": (0, 160, 255),
    "helicopter": (255, 255, 120),
}
_SHIFT = 3


def class_colour(name: str) -> tuple[int, int, int]:
    """RGB colour of a class: fixed for DOTA names, stable hash-derived hue otherwise."""
    if name in CLASS_COLOURS:
        return CLASS_COLOURS[name]
    hue = (zlib.crc32(name.encode()) % 360) / 360.0
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 1.0))


def draw_boxes(image: np.ndarray, polygons: np.ndarray, classes, scale: float = 1.0, thickness: int = 1) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 RGB with polygons ``(N, 8)`` (image pixels, multiplied by
    ``scale``) outlined in their class colour."""
    out = np.ascontiguousarray(image.copy())
    one = 1 << _SHIFT
    for poly, name in zip(np.asarray(polygons, float).reshape(-1, 8), classes):
        pts = np.round(poly.reshape(4, 2) * scale * one).astype(np.int32)
        colour = class_colour(name)
        cv2.polylines(out, [pts], True, colour, thickness, cv2.LINE_AA, _SHIFT)
        front = tuple(int(min(255, c * 0.5 + 128)) for c in colour)
        a, b = (tuple(int(v) for v in p) for p in pts[:2])
        cv2.line(out, a, b, front, thickness + 1, cv2.LINE_AA, _SHIFT)
    return out


def _label(img: np.ndarray, text: str, org, scale: float = 0.5) -> None:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = org
    cv2.rectangle(img, (x - 2, y - th - 4), (x + tw + 2, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_scene_grid(records: list[ImageRecord], images: list[np.ndarray] | None = None, ncols: int = 2,
                    cell: int = 640, thickness: int = 1, titles: bool = True, legend: bool = True) -> np.ndarray:
    """A grid picture ``(H, W, 3)`` uint8 RGB of labelled images, each fitted into a ``cell`` square.

    Args:
        records: the images' labels (``image_path`` is read unless ``images`` is given).
        images: optional RGB arrays matching ``records`` (for scenes not yet written to disk).
        ncols: grid columns; titles: draw ``image_id  WxH  N objects`` on each cell;
        legend: a bottom strip naming the class colours present.
    """
    if not records:
        raise ValueError("draw_scene_grid: no records to draw")
    if images is not None and len(images) != len(records):
        raise ValueError(f"draw_scene_grid: {len(images)} images for {len(records)} records")
    pad = 6
    cells, present = [], []
    for i, rec in enumerate(records):
        img = images[i] if images is not None else load_image_rgb(rec.image_path)
        h, w = img.shape[:2]
        s = cell / max(h, w)
        small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                           interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        small = draw_boxes(small, rec.polygons, rec.classes, scale=s, thickness=thickness)
        if titles:
            _label(small, f"{rec.image_id}  {w}x{h}  {len(rec)} objects", (6, 18))
        cells.append(small)
        for name in rec.classes:
            if name not in present:
                present.append(name)
    # Each row is as tall as its tallest image, so landscape rows leave no empty band.
    rows = [cells[r:r + ncols] for r in range(0, len(cells), ncols)]
    heights = [max(c.shape[0] for c in row) for row in rows]
    grid = np.full((sum(heights) + pad * (len(rows) + 1), ncols * (cell + pad) + pad, 3), 24, np.uint8)
    y0 = pad
    for row, height in zip(rows, heights):
        for c, small in enumerate(row):
            x0 = pad + c * (cell + pad)
            grid[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        y0 += height + pad
    if legend and present:
        # Swatch + name per class, wrapped onto as many lines as the grid width needs.
        font, line_h = cv2.FONT_HERSHEY_SIMPLEX, 24
        spots, x, y = [], pad + 4, 0
        for name in present:
            width = 30 + cv2.getTextSize(name, font, 0.5, 1)[0][0]
            if x + width > grid.shape[1] and x > pad + 4:
                x, y = pad + 4, y + line_h
            spots.append((name, x, y))
            x += width
        strip = np.full((y + line_h + 10, grid.shape[1], 3), 24, np.uint8)
        for name, x, y in spots:
            cv2.rectangle(strip, (x, y + 8), (x + 14, y + 22), class_colour(name), -1)
            cv2.putText(strip, name, (x + 20, y + 21), font, 0.5, (235, 235, 235), 1, cv2.LINE_AA)
        grid = np.concatenate([grid, strip], axis=0)
    return grid


def save_scene_grid(path, records: list[ImageRecord], **kwargs) -> Path:
    """Draw ``draw_scene_grid(records, **kwargs)`` and write it as PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = draw_scene_grid(records, **kwargs)
    if not cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
