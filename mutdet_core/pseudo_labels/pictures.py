"""The inspection's pictures: tile overlays with a legend, crop grids, histograms, a cluster palette.

Every tile overlay (``draw_tile``) carries a legend strip under the tile that names what each line colour
means, so a picture reads without the code. The colour scheme, the same in every overlay:

    ground truth found by some box (IoU >= iou_thr)     white, 1 px      (GT_FOUND)
    ground truth missed by every box                     red, 1 px        (GT_MISSED)
    pseudo-box of cluster k (pseudo-labels stores)       palette(K)[k], 2 px, the clusters named in the legend
    pseudo-box matching / not matching ground truth      cyan / yellow, 2 px (boxes stores)
    mask (masks stores)                                  one palette colour per mask, filled at 45 %

``palette(k)`` is a farthest-point sequence in CIELAB (away from white, red and dark colours, which the
ground truth and dark imagery use): its first k colours are as far apart as the sequence allows, at least
about 21 (k = 64) and 12 (k = 256) in CIE76 Delta E, where golden-ratio hues fall under 2 at k = 64.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

GT_FOUND = (255, 255, 255)
GT_MISSED = (255, 40, 40)
BOX_MATCHED = (0, 230, 255)
BOX_UNMATCHED = (255, 210, 0)
LEGEND_BACKGROUND = 28
PALETTE_LENGTH = 1024


def rgb_to_lab(rgb) -> np.ndarray:
    """``(N, 3)`` uint8-range RGB -> ``(N, 3)`` float32 CIELAB (L in 0-100)."""
    rgb = np.asarray(rgb, np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3)


@lru_cache(maxsize=1)
def _palette_sequence() -> np.ndarray:
    levels = np.linspace(0, 255, 16)
    candidates = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    lab = rgb_to_lab(candidates)
    # keep away from the ground-truth colours and from dark colours that vanish on dark roofs and water
    reserved = rgb_to_lab([GT_FOUND, GT_MISSED, (0, 0, 0)])
    to_reserved = np.linalg.norm(lab[:, None] - reserved[None], axis=2).min(axis=1)
    keep = (to_reserved > 30) & (lab[:, 0] > 40)
    candidates, lab, nearest = candidates[keep], lab[keep], to_reserved[keep]
    order = []
    for _ in range(min(PALETTE_LENGTH, len(candidates))):
        j = int(nearest.argmax())
        order.append(j)
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[j], axis=1))
        nearest[j] = -1.0
    return np.round(candidates[order]).astype(np.uint8)


def palette(k: int) -> np.ndarray:
    """``(k, 3)`` uint8 RGB colours, each as far (CIELAB) from the previous ones as possible; colour i is
    the same for every k. Beyond ``PALETTE_LENGTH`` colours repeat."""
    sequence = _palette_sequence()
    return sequence[np.arange(max(k, 1)) % len(sequence)]


@dataclass
class LegendEntry:
    """One legend item: ``label`` beside a swatch of ``colours`` (several: one small swatch each), drawn as
    an outline of ``thickness`` px, or filled when ``filled``."""

    label: str
    colours: list = field(default_factory=list)
    thickness: int = 2
    filled: bool = False


def save_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"could not write {path}")


def put_text(image: np.ndarray, text: str, org, scale: float = 0.5) -> None:
    """White text on a black box at ``org`` (its lower-left corner)."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = org
    cv2.rectangle(image, (x, y - th - 3), (x + tw + 4, y + base), (0, 0, 0), -1)
    cv2.putText(image, text, (x + 2, y - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


SWATCH_W, SWATCH_H, ROW_H, PAD = 22, 12, 22, 8


def legend_strip(entries: list[LegendEntry], width: int, scale: float = 0.45) -> np.ndarray:
    """``(H, width, 3)`` uint8 strip: the entries left to right, wrapped into rows of ``ROW_H`` px."""
    placed, x, row = [], PAD, 0
    for entry in entries:
        (tw, _), _ = cv2.getTextSize(entry.label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        w = len(entry.colours) * (SWATCH_W + 2) + 4 + tw + 2 * PAD
        if x + w > width and x > PAD:
            x, row = PAD, row + 1
        placed.append((entry, x, row))
        x += w
    strip = np.full(((row + 1) * ROW_H + PAD, width, 3), LEGEND_BACKGROUND, np.uint8)
    for entry, x, row in placed:
        y = PAD // 2 + row * ROW_H + (ROW_H - SWATCH_H) // 2
        for colour in entry.colours:
            colour = tuple(int(c) for c in colour)
            if entry.filled:
                cv2.rectangle(strip, (x, y), (x + SWATCH_W - 1, y + SWATCH_H - 1), colour, -1)
            else:
                t = max(int(entry.thickness), 1)
                cv2.rectangle(strip, (x + t // 2, y + t // 2), (x + SWATCH_W - 1 - t // 2, y + SWATCH_H - 1 - t // 2),
                              colour, t)
            x += SWATCH_W + 2
        cv2.putText(strip, entry.label, (x + 4, y + SWATCH_H - 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (235, 235, 235), 1, cv2.LINE_AA)
    return strip


def _poly(image, polygon, colour, thickness) -> None:
    # 3 fractional bits: sub-pixel corners, as the boxes are
    cv2.polylines(image, [np.round(np.asarray(polygon).reshape(4, 2) * 8).astype(np.int32)], True,
                  tuple(int(c) for c in colour), thickness, cv2.LINE_AA, 3)


def draw_tile(pixels, polygons, colours, gt_polygons=None, title: str = "", masks=None, gt_found=None,
              legend: list[LegendEntry] | None = None) -> np.ndarray:
    """Tile ``(S, S, 3)`` with ground truth (1 px: white where ``gt_found`` (G,) bool is true or not given,
    red where false) and pseudo-boxes (``polygons`` (N, 8), 2 px in ``colours`` (N, 3)); ``masks``: optional
    list of ``(bool crop, (x, y, w, h))`` filled at 45 % opacity in the same colours. With ``legend``, the
    result is ``(S + strip, S, 3)``: the ``legend_strip`` of the entries under the tile."""
    image = np.ascontiguousarray(pixels.copy())
    if masks:
        overlay = image.copy()
        for (crop, (x, y, w, h)), colour in zip(masks, colours):
            overlay[y:y + h, x:x + w][crop] = colour
        image = cv2.addWeighted(overlay, 0.45, image, 0.55, 0)
    gt = np.asarray(gt_polygons if gt_polygons is not None else np.zeros((0, 8))).reshape(-1, 8)
    found = np.ones(len(gt), bool) if gt_found is None else np.asarray(gt_found, bool)
    for poly, ok in zip(gt, found):
        _poly(image, poly, GT_FOUND if ok else GT_MISSED, 1)
    for poly, colour in zip(np.asarray(polygons).reshape(-1, 8), colours):
        _poly(image, poly, colour, 2)
    if title:
        put_text(image, title, (4, 18))
    if legend:
        image = np.concatenate([image, legend_strip(legend, image.shape[1])])
    return image


def ground_truth_legend(iou_thr: float, found: int, missed: int) -> list[LegendEntry]:
    return [LegendEntry(f"ground truth found, IoU>={iou_thr:g} ({found})", [GT_FOUND], 1),
            LegendEntry(f"ground truth missed ({missed})", [GT_MISSED], 1)]


def cluster_legend(tile_clusters: np.ndarray, colours: np.ndarray, names: list[str],
                   max_entries: int = 20) -> list[LegendEntry]:
    """Entries for the clusters of one tile's boxes (``tile_clusters`` (N,) ids), most boxes first; the
    rest summed in one entry."""
    ids, counts = np.unique(np.asarray(tile_clusters, np.int64), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    entries = [LegendEntry(f"{names[ids[j]]} ({counts[j]})", [colours[ids[j]]]) for j in order[:max_entries]]
    if len(order) > max_entries:
        rest = order[max_entries:]
        entries.append(LegendEntry(f"+{len(rest)} more clusters ({counts[rest].sum()} boxes)",
                                   [colours[ids[j]] for j in rest[:3]]))
    return entries


def crop_grid(crops: np.ndarray, columns: int, label: str = "", colour=None) -> np.ndarray:
    """``(n, s, s, 3)`` crops on a grid with 2 px gaps, ``label`` above (after a swatch of ``colour``, the
    colour of the same boxes in the tile overlays, when given)."""
    n, s = len(crops), crops.shape[1] if len(crops) else 64
    rows = max(1, -(-n // columns))
    header = 22 if label else 0
    grid = np.full((header + rows * (s + 2), columns * (s + 2), 3), 32, np.uint8)
    for j, crop in enumerate(crops):
        r, c = divmod(j, columns)
        grid[header + r * (s + 2):header + r * (s + 2) + s, c * (s + 2):c * (s + 2) + s] = crop
    if label:
        x = 2
        if colour is not None:
            cv2.rectangle(grid, (2, 4), (2 + SWATCH_W, 4 + SWATCH_H + 2), tuple(int(v) for v in colour), -1)
            x += SWATCH_W + 4
        put_text(grid, label, (x, 17))
    return grid


def histogram(path: Path, values, title: str, xlabel: str, bins=40, log_x: bool = False, bar: bool = False):
    """A matplotlib histogram (``bar``: ``values`` as bar heights) saved at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    values = np.asarray(values, dtype=np.float64)
    if bar:
        ax.bar(np.arange(len(values)), values, width=1.0, color="tab:blue")
    elif len(values):
        if log_x and (values > 0).all():
            bins = np.geomspace(values.min(), max(values.max(), values.min() * 1.01), bins)
            ax.set_xscale("log")
        ax.hist(values, bins=bins, color="tab:blue")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count" if not bar else "boxes")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
