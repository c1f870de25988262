"""Patch merging: tile detections back to full images, ready for the DOTA evaluation server (SPEC 5).

Per class (MutDet's ``CustomDOTADataset.merge_det`` + mmrotate ``merge_det``):
    1. keep detections with ``score >= score_thr`` (0.05);
    2. polygon NMS per tile (``patch_nms_iou`` 0.5);
    3. shift to image coordinates: ``(x + x_offset) / rate``, ``(y + y_offset) / rate``;
    4. polygon NMS per image (``merge_nms_iou`` 0.1);
    5. write ``Task1_<class>.txt`` for every class (empty ones included) and optionally a zip.
Steps 2 and 4 use the devkit's polygon NMS semantics (:mod:`.nms`); MutDet/mmrotate ran mmcv
``nms_rotated`` on (cx, cy, w, h, angle) boxes, which for rectangles gives the same IoU up to rounding but
suppresses at IoU >= thr on CPU. ``DEVKIT_RESULTMERGE`` = the devkit's ``ResultMerge.py`` (no score
filter, no per-tile NMS, image NMS 0.3), which produced the example ``merged_dets`` of the devkit;
``ResultMerge_multi_process.py`` is the same with 0.1.

Tile names (both parse to image id, offset and rate):
    - mmrotate / ours: ``{image_id}__{window size}__{x}___{y}`` (e.g. ``P0001__800__600___0``): the tile is
      a crop at original scale (a rate changes the window size, not the image), so rate = 1.
    - DOTA devkit: ``{image_id}__{rate}__{x}___{y}`` (e.g. ``P0168__1__600___0``, ``P0168__0.5__0___0``):
      the image was resized by ``rate`` before cropping, so coordinates are divided by it.
    ``naming='auto'`` reads the middle field as a rate when it has a fraction or is below 32 (no window is
    that small; no rate that large), otherwise as a window size; pass ``'devkit'`` or ``'mmrotate'`` to
    force one reading.

Order: images appear in the order of their first detection in the class's input (the devkit's dict order),
kept boxes in NMS processing order (descending score).
"""
from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets.dota import read_task1_folder, write_task1_folder
from ..datasets.records import LabelFormatError
from ..tiling.windows import parse_tile_name
from .nms import batched_poly_nms

log = logging.getLogger(__name__)

RATE_FIELD_MAX = 32  # 'auto' naming: a middle field below this (or fractional) is a devkit rate


@dataclass(frozen=True)
class MergeParams:
    """Patch-merging settings. ``None`` disables the score filter or the per-tile NMS."""

    score_thr: float | None = 0.05
    patch_nms_iou: float | None = 0.5
    merge_nms_iou: float = 0.1
    naming: str = "auto"

    def __post_init__(self):
        if self.naming not in ("auto", "devkit", "mmrotate"):
            raise ValueError(f"tile naming must be 'auto', 'devkit' or 'mmrotate', got {self.naming!r}")
        for name in ("patch_nms_iou", "merge_nms_iou"):
            v = getattr(self, name)
            if v is not None and not 0.0 < float(v) < 1.0:
                raise ValueError(f"{name}={v} is outside (0, 1)")
        if self.score_thr is not None and not np.isfinite(self.score_thr):
            raise ValueError(f"score_thr={self.score_thr} is not finite")


MUTDET_MERGE = MergeParams()
DEVKIT_RESULTMERGE = MergeParams(score_thr=None, patch_nms_iou=None, merge_nms_iou=0.3)


def build_merge_params(score_thr=0.05, patch_nms_iou=0.5, merge_nms_iou=0.1, naming="auto") -> MergeParams:
    return MergeParams(score_thr, patch_nms_iou, merge_nms_iou, naming)


def tile_origin(name: str, naming: str = "auto") -> tuple[str, float, float, float]:
    """``(image_id, x_offset, y_offset, rate)`` of a tile name (module docstring)."""
    image_id, middle, x, y = parse_tile_name(name)
    if naming == "devkit" or (naming == "auto" and (isinstance(middle, float) or middle < RATE_FIELD_MAX)):
        rate = float(middle)
        if rate <= 0:
            raise ValueError(f"tile {name!r}: rate {middle} is not positive")
    else:
        rate = 1.0
    return image_id, float(x), float(y), rate


def _columns(dets):
    ids = [str(d[0]) for d in dets]
    scores = np.array([float(d[1]) for d in dets], dtype=np.float64)
    polys = np.array([np.asarray(d[2], dtype=np.float64).reshape(8) for d in dets]).reshape(-1, 8)
    return ids, scores, polys


def _factorize(names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Codes in first-appearance order (the devkit's dict insertion order)."""
    codes, uniques = {}, []
    out = np.empty(len(names), dtype=np.int64)
    for k, n in enumerate(names):
        c = codes.get(n)
        if c is None:
            c = codes[n] = len(uniques)
            uniques.append(n)
        out[k] = c
    return out, uniques


def merge_class(tile_ids, scores, polys, params: MergeParams = MUTDET_MERGE, where: str = "detections"):
    """Merge one class's tile detections. Returns ``[(image_id, score, poly(8,)), ...]``.

    Args:
        tile_ids: N tile names; scores (N,); polys (N, 8) in tile coordinates; input order = file order.
        where: the source, for error messages.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    polys = np.asarray(polys, dtype=np.float64).reshape(-1, 8)
    keep = np.ones(len(scores), dtype=bool) if params.score_thr is None else scores >= params.score_thr
    tile_ids = [t for t, k in zip(tile_ids, keep) if k]
    scores, polys = scores[keep], polys[keep]
    if not len(scores):
        return []
    tile_code, tiles = _factorize(tile_ids)
    origins = []
    for t in tiles:
        try:
            origins.append(tile_origin(t, params.naming))
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    if params.patch_nms_iou is not None:
        kept = np.sort(batched_poly_nms(polys, scores, tile_code, params.patch_nms_iou))  # back to input order
        tile_code, scores, polys = tile_code[kept], scores[kept], polys[kept]
    off = np.array([[o[1], o[2], o[3]] for o in origins], dtype=np.float64)[tile_code]
    shifted = np.empty_like(polys)
    shifted[:, 0::2] = (polys[:, 0::2] + off[:, 0:1]) / off[:, 2:3]  # devkit: float(p + x) / float(rate)
    shifted[:, 1::2] = (polys[:, 1::2] + off[:, 1:2]) / off[:, 2:3]
    image_code, images = _factorize([origins[c][0] for c in tile_code])
    kept = batched_poly_nms(shifted, scores, image_code, params.merge_nms_iou)
    return [(images[image_code[k]], float(scores[k]), shifted[k]) for k in kept]


def merge_detections(tile_dets: dict, class_names=None, params: MergeParams = MUTDET_MERGE) -> dict:
    """Merge ``{class: [(tile_name, score, poly(8,)), ...]}`` into ``{class: [(image_id, score, poly)]}``."""
    if class_names is not None:
        unknown = [c for c in tile_dets if c not in class_names]
        if unknown:
            raise ValueError(f"tile detections for classes {unknown} that are not in the class list "
                             f"{list(class_names)}")
    out = {}
    for c, dets in tile_dets.items():
        ids, scores, polys = _columns(dets)
        out[c] = merge_class(ids, scores, polys, params, where=f"class {c}")
    return out


def write_submission_zip(task1_dir, zip_path) -> Path:
    """Zip the ``Task1_*.txt`` files of ``task1_dir`` at the archive root (the server's layout)."""
    task1_dir, zip_path = Path(task1_dir), Path(zip_path)
    files = sorted(task1_dir.glob("Task1_*.txt"))
    if not files:
        raise ValueError(f"{task1_dir} has no Task1_<class>.txt files to zip")
    tmp = zip_path.with_name(zip_path.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, arcname=f.name)
    tmp.replace(zip_path)  # atomic: a half-written zip never carries the final name
    return zip_path


def merge_task1_folder(tile_det_dir, out_dir, class_names, params: MergeParams = MUTDET_MERGE,
                       make_zip: bool = False) -> dict:
    """Read tile ``Task1_<class>.txt`` files, merge, write ``out_dir/Task1_<class>.txt`` for every class.

    Returns ``{"task1_dir", "zip" (path or None), "num_tile_dets": {class: n}, "num_merged": {class: n}}``.
    Raises ``LabelFormatError`` (file and line) for malformed lines or tile names without offsets, and
    ``ValueError`` when the folder holds no ``Task1_*.txt`` file.
    """
    tile_det_dir, out_dir = Path(tile_det_dir), Path(out_dir)
    raw = read_task1_folder(tile_det_dir, class_names=class_names)
    if not raw:
        raise ValueError(f"tile detection folder {tile_det_dir} has no Task1_<class>.txt files: nothing to merge")
    merged = {}
    for c, dets in raw.items():
        path = tile_det_dir / f"Task1_{c}.txt"
        for tile in dict.fromkeys(d[0] for d in dets):  # each tile name once, in file order
            try:
                tile_origin(tile, params.naming)
            except ValueError as err:
                line = next(k for k, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text.split()[:1] == [tile])
                raise LabelFormatError(path, str(err), line) from None
        ids, scores, polys = _columns(dets)
        merged[c] = merge_class(ids, scores, polys, params, where=str(path))
    write_task1_folder(merged, out_dir, class_names)
    zip_path = write_submission_zip(out_dir, out_dir.parent / (out_dir.name + ".zip")) if make_zip else None
    summary = {"task1_dir": str(out_dir), "zip": None if zip_path is None else str(zip_path),
               "num_tile_dets": {c: len(raw.get(c, [])) for c in class_names},
               "num_merged": {c: len(merged.get(c, [])) for c in class_names}}
    log.info("merged %d tile detections into %d image detections (%s)", sum(summary["num_tile_dets"].values()),
             sum(summary["num_merged"].values()), out_dir)
    return summary
