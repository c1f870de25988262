"""Cut a dataset split into tiles and write a tile store (SPEC 2.1).

Everything is checked before the first pixel is decoded: every label file parses (errors name the file
and line), every image header is readable and small enough for OpenCV, every image id can be written in a
DOTA result file, every class is known. Only then are images decoded, cropped, padded and written, in a
few threads (OpenCV decoding and Blosc compression release the GIL). Objects kept on padding pixels, or
dropped because they lie outside their image, are counted in the log.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from tqdm import tqdm

from ..datasets.dota import DIFFICULTIES, MAX_ABS_COORD, untangle_quads
from ..datasets.images import check_decodable_size, image_size, load_image_rgb
from ..datasets.records import ImageRecord
from .store import TileStoreWriter
from .windows import TilingParams, assign_objects, sliding_windows, tile_name

log = logging.getLogger(__name__)


def fingerprint(records: list[ImageRecord], params: TilingParams, classes: list[str]) -> str:
    """A short hash of what a store is built from: parameters, class list, image files (name and byte
    size) and label contents. Later stages record it, so a store rebuilt from other inputs is noticed."""
    h = hashlib.sha256()
    h.update(json.dumps({"params": params.__dict__, "classes": list(classes)}, sort_keys=True, default=list).encode())
    for r in records:
        size = r.image_path.stat().st_size if r.image_path is not None else -1
        h.update(f"{r.image_id}|{size}|".encode())
        h.update(np.ascontiguousarray(r.polygons, dtype=np.float64).tobytes())
        h.update("|".join(r.classes).encode())
        h.update(np.ascontiguousarray(r.difficulty, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def _safe_image_id(image_id: str) -> str:
    """``image_id`` with whitespace runs as ``_`` and non-ASCII letters transliterated (``ä`` -> ``a``)."""
    ascii_id = unicodedata.normalize("NFKD", image_id).encode("ascii", "ignore").decode()
    return re.sub(r"\s+", "_", ascii_id.strip()) or "image"


def check_record(record: ImageRecord, class_index: dict) -> None:
    """Raise ``ValueError`` naming the file for what the tiler or later stages cannot handle."""
    where = record.label_path or record.image_path or record.image_id
    if record.image_path is None:
        raise ValueError(f"{record.image_id}: no image file to tile")
    if not record.image_id.isascii() or any(ch.isspace() or not ch.isprintable() for ch in record.image_id):
        # DOTA Task1 files are whitespace-separated lines: such ids are tiled but never merged or evaluated.
        raise ValueError(f"{record.image_path}: image id {record.image_id!r} has spaces or non-ASCII characters, "
                         f"which DOTA result files cannot hold; rename the image and its label file to "
                         f"{_safe_image_id(record.image_id)!r}")
    unknown = sorted({c for c in record.classes if c not in class_index})
    if unknown:
        raise ValueError(f"{where}: classes {unknown} are not in {list(class_index)}")
    bad = np.flatnonzero(~np.isin(record.difficulty, DIFFICULTIES))
    if len(bad):  # stored as int8: 300 would silently become 44
        raise ValueError(f"{where}: object {bad[0] + 1} has difficulty {record.difficulty[bad[0]]}, not one of "
                         f"{DIFFICULTIES}; fix the label")
    if len(record) and not np.abs(record.polygons).max() <= MAX_ABS_COORD:  # NaN fails too
        obj = int(np.argmax(~(np.abs(record.polygons) <= MAX_ABS_COORD).all(axis=1)))
        raise ValueError(f"{where}: object {obj + 1} has a coordinate beyond ±{MAX_ABS_COORD:g} px (or not a "
                         "number); fix the label")


def plan_tiles(records: list[ImageRecord], params: TilingParams, classes: list[str], stats: dict | None = None):
    """Windows and kept objects of every image, without decoding any pixel.

    Returns ``(tiles, objects)``: the tile index DataFrame (tile, image_id, x, y, size) and, per tile, a
    dict with the translated float32 polygons, class ids and difficulty (2 when truncated). ``stats``, if
    given, receives per-split counts: ``on_padding`` (kept objects reaching into the padding of a window
    larger than the image), ``outside`` (objects entirely outside their image, in no tile), and for each
    the label files (``on_padding_files``, ``outside_files``).
    """
    class_index = {name: i for i, name in enumerate(classes)}
    rows, objects = [], []
    if stats is not None:
        stats.update(on_padding=0, outside=0, on_padding_files=[], outside_files=[])
    for record in records:
        check_record(record, class_index)
        width, height = image_size(record.image_path)
        check_decodable_size(record.image_path, width, height)
        where = record.label_path or record.image_path
        polygons, fixed = untangle_quads(record.polygons)  # the DOTA reader already did, with line numbers
        if fixed.any():
            log.warning("%s: objects %s: self-intersecting polygon; corners reordered clockwise around their "
                        "centroid, check these labels", where, ", ".join(str(i + 1) for i in np.flatnonzero(fixed)))
        # float32 like mmrotate's loader: the IoF and the printed coordinates depend on it.
        polys = polygons.astype(np.float32)
        windows = sliding_windows(width, height, params)
        try:
            assigned = assign_objects(polys, windows, params.iof_thr)
        except shapely.errors.GEOSException as err:
            raise ValueError(f"{where}: an object polygon cannot be intersected with a tile ({err}); fix its "
                             "corners") from None
        if stats is not None:
            _count_border_objects(stats, where, polys, windows, assigned, width, height)
        for window, kept in zip(windows, assigned):
            x0, y0 = int(window[0]), int(window[1])
            shift = np.array([x0, y0] * 4, dtype=np.float32)
            diff = record.difficulty[kept.indices].copy()
            diff[kept.truncated] = 2
            rows.append({"tile": tile_name(record.image_id, window), "image_id": record.image_id,
                         "x": x0, "y": y0, "size": int(window[2] - window[0])})
            objects.append({
                "polygons": polys[kept.indices] - shift,
                "class_id": np.array([class_index[record.classes[j]] for j in kept.indices], dtype=np.int16),
                "difficulty": diff.astype(np.int8),
            })
    tiles = pd.DataFrame(rows, columns=["tile", "image_id", "x", "y", "size"])
    duplicated = tiles["tile"][tiles["tile"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"duplicate tile names {duplicated[:3]}: two images share an id")
    return tiles, objects


def _count_border_objects(stats: dict, where, polys, windows, assigned, width: int, height: int) -> None:
    """Add one image's objects on padding pixels and objects outside the image (never kept) to ``stats``."""
    pts = polys.reshape(-1, 4, 2)
    lo, hi = pts.min(axis=1), pts.max(axis=1)
    on_padding, kept = np.zeros(len(pts), bool), np.zeros(len(pts), bool)
    for window, k in zip(windows, assigned):
        # Windows reach past the image only when it is smaller than a window; that part is padding.
        beyond = ((hi[k.indices, 0] > width) & (window[2] > width)) | ((hi[k.indices, 1] > height) & (window[3] > height))
        on_padding[k.indices[beyond]] = True
        kept[k.indices] = True
    outside = ~kept & ((lo[:, 0] >= width) | (lo[:, 1] >= height) | (hi[:, 0] <= 0) | (hi[:, 1] <= 0))
    for key, mask in (("on_padding", on_padding), ("outside", outside)):
        if mask.any():
            stats[key] += int(mask.sum())
            stats[key + "_files"].append(str(where))


def crop_window(image: np.ndarray, x: int, y: int, size: int, padding_rgb) -> np.ndarray:
    """The ``size`` x ``size`` patch at (x, y); parts outside the image are padded bottom/right."""
    patch = image[y:y + size, x:x + size]
    if patch.shape[0] == size and patch.shape[1] == size:
        return np.ascontiguousarray(patch)
    padded = np.empty((size, size, 3), dtype=np.uint8)
    padded[...] = np.asarray(padding_rgb, dtype=np.uint8)
    padded[:patch.shape[0], :patch.shape[1]] = patch
    return padded


def tile_split(records: list[ImageRecord], out_path, params: TilingParams, classes: list[str],
               dataset: str = "", split: str = "", threads: int = 1, overwrite: bool = False,
               progress: bool | None = None) -> Path:
    """Tile ``records`` into a tile store at ``out_path`` and return its path.

    Args:
        records: the split's images with their objects (image_path required).
        params: window sizes, gaps, rates and thresholds.
        classes: the dataset's class list; objects are stored as indices into it.
        threads: images decoded and written in parallel.
        overwrite: replace an existing finished store (otherwise an existing store is an error).
    """
    out_path = Path(out_path)
    if not records:
        raise ValueError(f"{dataset or 'dataset'}/{split or 'split'}: no images to tile; nothing written to {out_path}")
    records = sorted(records, key=lambda r: r.image_id)
    stats: dict = {}
    tiles, objects = plan_tiles(records, params, classes, stats)
    if stats["on_padding"]:
        log.warning("%s/%s: %d object(s) kept on padding pixels beyond their image, in %d label file(s) (e.g. %s): "
                    "check their coordinates against the image size", dataset, split, stats["on_padding"],
                    len(stats["on_padding_files"]), stats["on_padding_files"][0])
    if stats["outside"]:
        log.warning("%s/%s: %d object(s) lie entirely outside their image and are in no tile (dropped), in %d label "
                    "file(s) (e.g. %s)", dataset, split, stats["outside"], len(stats["outside_files"]),
                    stats["outside_files"][0])
    n_zero_area = sum(int((_areas(r.polygons) <= 0).sum()) for r in records)
    if n_zero_area:
        log.warning("%d zero-area polygons can never be kept in a tile (mmrotate drops them too)", n_zero_area)
    log.info("%s/%s: %d images -> %d tiles, %d objects kept", dataset, split, len(records), len(tiles),
             sum(len(o["class_id"]) for o in objects))
    attrs = {
        "dataset": dataset, "split": split, "classes": list(classes),
        "sizes": list(params.sizes), "gaps": list(params.gaps), "rates": list(params.rates),
        "img_rate_thr": params.img_rate_thr, "iof_thr": params.iof_thr,
        "padding_value_bgr": list(params.padding_value),
        "fingerprint": fingerprint(records, params, classes),
        "images": [r.image_id for r in records],
    }
    writer = TileStoreWriter(out_path, tiles, [len(o["class_id"]) for o in objects], attrs, overwrite=overwrite)
    padding_rgb = tuple(params.padding_value[::-1])
    by_image = tiles.groupby("image_id", sort=False).indices
    record_of = {r.image_id: r for r in records}

    def work(image_id: str) -> int:
        image = load_image_rgb(record_of[image_id].image_path, log=log)
        for i in by_image[image_id]:
            row = tiles.iloc[i]
            patch = crop_window(image, int(row["x"]), int(row["y"]), int(row["size"]), padding_rgb)
            o = objects[i]
            writer.write_tile(int(i), patch, o["polygons"], o["class_id"], o["difficulty"])
        return len(by_image[image_id])

    try:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool, \
                tqdm(total=len(tiles), desc=f"tiling {dataset}/{split}", unit="tile", disable=None if progress is None else not progress) as bar:
            for done in pool.map(work, list(by_image)):
                bar.update(done)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def _areas(polygons: np.ndarray) -> np.ndarray:
    pts = polygons.reshape(-1, 4, 2)
    x, y = pts[..., 0], pts[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))
