"""Look at pseudo-labels: pictures, crop montages, statistics and, where there is ground truth, quality.

``inspect_store(path, out_dir)`` works on a masks, boxes, embeddings or pseudo-labels store (the CLI's
``mutdet inspect STORE``) and writes::

    out_dir/
        stats.json            counts, size / aspect-ratio / score summaries, recall and purity (if labelled)
        tiles.csv             per tile: boxes (masks), ground-truth objects, recalled objects
        tiles/<tile>.png      a seeded sample of tiles: pseudo-boxes coloured by cluster (boxes stores: by
                              rank, masks stores: filled masks), ground truth in thin white
        boxes_per_tile.png, box_size.png, aspect_ratio.png      histograms
        cluster_sizes.png, clusters.csv, clusters/cluster_<k>.png, clusters_montage.png   (pseudo-labels)

Box size is sqrt(w * h) in tile pixels; aspect ratio is w / h >= 1 (le90).
"""
from __future__ import annotations

import colorsys
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..tiling.store import TileStore
from .artifact import StageError, check_input, open_stage
from .boxes import FORMAT as BOXES_FORMAT
from .clustering import PSEUDO_LABELS_FORMAT
from .crops import rotated_crops_rgb
from .masks import FORMAT as MASKS_FORMAT, read_tile_masks
from .quality import QualityAccumulator, purity_per_cluster
from .stores import EMBEDDINGS_FORMAT

log = logging.getLogger(__name__)

FORMATS = (MASKS_FORMAT, BOXES_FORMAT, EMBEDDINGS_FORMAT, PSEUDO_LABELS_FORMAT)


def palette(k: int) -> np.ndarray:
    """``(k, 3)`` uint8 RGB colours, neighbouring indices far apart in hue (golden-ratio steps)."""
    return np.array([[int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 1.0)]
                     for i in range(max(k, 1))], dtype=np.uint8)


def _save_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"could not write {path}")


def _text(image: np.ndarray, text: str, org, scale: float = 0.5) -> None:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = org
    cv2.rectangle(image, (x, y - th - 3), (x + tw + 4, y + base), (0, 0, 0), -1)
    cv2.putText(image, text, (x + 2, y - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_tile(pixels, polygons, colours, gt_polygons=None, title: str = "", masks=None) -> np.ndarray:
    """Tile with ground truth (thin white) and pseudo-boxes (2 px, ``colours`` (N, 3)); ``masks``:
    optional list of ``(bool crop, bbox)`` filled at 45 % opacity in the same colours."""
    image = np.ascontiguousarray(pixels.copy())
    if masks:
        overlay = image.copy()
        for (crop, (x, y, w, h)), colour in zip(masks, colours):
            overlay[y:y + h, x:x + w][crop] = colour
        image = cv2.addWeighted(overlay, 0.45, image, 0.55, 0)
    for poly in np.asarray(gt_polygons if gt_polygons is not None else np.zeros((0, 8))).reshape(-1, 8):
        cv2.polylines(image, [np.round(poly.reshape(4, 2) * 8).astype(np.int32)], True, (255, 255, 255), 1,
                      cv2.LINE_AA, 3)
    for poly, colour in zip(np.asarray(polygons).reshape(-1, 8), colours):
        cv2.polylines(image, [np.round(poly.reshape(4, 2) * 8).astype(np.int32)], True,
                      tuple(int(c) for c in colour), 2, cv2.LINE_AA, 3)
    if title:
        _text(image, title, (4, 18))
    return image


def crop_grid(crops: np.ndarray, columns: int, label: str = "") -> np.ndarray:
    """``(n, s, s, 3)`` crops on a grid with 2 px gaps, ``label`` above."""
    n, s = len(crops), crops.shape[1] if len(crops) else 64
    rows = max(1, -(-n // columns))
    header = 22 if label else 0
    grid = np.full((header + rows * (s + 2), columns * (s + 2), 3), 32, np.uint8)
    for j, crop in enumerate(crops):
        r, c = divmod(j, columns)
        grid[header + r * (s + 2):header + r * (s + 2) + s, c * (s + 2):c * (s + 2) + s] = crop
    if label:
        _text(grid, label, (2, 17))
    return grid


def _histogram(path: Path, values, title: str, xlabel: str, bins=40, log_x: bool = False, bar: bool = False):
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


def _summary(values) -> dict:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"n": 0}
    q = np.percentile(values, [5, 25, 50, 75, 95])
    return {"n": int(len(values)), "mean": float(values.mean()), "min": float(values.min()),
            "p5": float(q[0]), "p25": float(q[1]), "median": float(q[2]), "p75": float(q[3]), "p95": float(q[4]),
            "max": float(values.max())}


def linked_tile_store(store, tile_store=None) -> TileStore:
    """The tile store a stage store was built from (recorded path, or ``tile_store``), fingerprint-checked."""
    path = tile_store or (store.attrs.get("inputs", {}).get("tiles") or {}).get("path") or store.attrs.get("tile_store")
    if path is None:
        raise StageError(f"{store.path} does not record its tile store; pass tile_store")
    tiles = path if isinstance(path, TileStore) else TileStore.open(path)
    check_input(store, "tiles", tiles, "the pseudo-label stages (or pass the tile store they were built from)")
    return tiles


def linked_boxes_store(store, boxes_store=None):
    """The boxes store row-aligned with an embeddings / pseudo-labels store, fingerprint-checked."""
    path = boxes_store or store.attrs["inputs"]["boxes"]["path"]
    boxes = open_stage(path, BOXES_FORMAT)
    recorded = store.attrs["inputs"]["boxes"]["fingerprint"]
    if boxes.fingerprint != recorded or not np.array_equal(boxes.offsets, store.offsets):
        raise StageError(f"{boxes.path} (fingerprint {boxes.fingerprint}) is not the boxes store {store.path} was "
                         f"built from (fingerprint {recorded}); rerun the embedding and clustering stages")
    return boxes


def inspect_store(path, out_dir, num_tiles: int = 8, num_clusters_shown: int = 8, crops_per_cluster: int = 24,
                  iou_thr: float = 0.5, seed: int = 0, tile_store=None, boxes_store=None) -> dict:
    """Pictures and statistics of any pseudo-label stage store; returns the statistics written to
    ``stats.json``. ``tile_store`` / ``boxes_store`` override the recorded input paths (moved stores)."""
    store = open_stage(path, FORMATS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tiles = linked_tile_store(store, tile_store)
    fmt = store.attrs["format"]
    boxes = store if fmt == BOXES_FORMAT else (linked_boxes_store(store, boxes_store) if fmt != MASKS_FORMAT else None)
    pseudo = store if fmt == PSEUDO_LABELS_FORMAT else None
    num_classes = int(pseudo.attrs["num_clusters"]) if pseudo is not None else 0
    colours = palette(num_classes)
    rng = np.random.default_rng(seed)
    with_rows = np.nonzero(np.diff(store.offsets) > 0)[0]
    pool = with_rows if len(with_rows) >= num_tiles else np.arange(len(store))
    shown = set(rng.choice(pool, size=min(num_tiles, len(pool)), replace=False).tolist()) if len(pool) else set()

    labelled = any(tiles.read_objects(i)["polygons"].shape[0] for i in range(len(tiles)))
    quality = QualityAccumulator(tiles.classes, iou_thr) if labelled and boxes is not None else None
    rboxes = boxes.read_all("rbox") if boxes is not None else np.zeros((0, 5), np.float32)
    polygons = boxes.read_all("polygon") if boxes is not None else None
    cluster = pseudo.read_all("pseudo_class") if pseudo is not None else None
    names = store.index["tile"].tolist()
    per_tile = []
    for i in range(len(store)):
        rows = store.rows(i)
        objects = tiles.read_objects(i)
        entry = {"tile": names[i], "rows": rows.stop - rows.start, "gt": len(objects["polygons"])}
        if quality is not None:
            entry.update(quality.add_tile(objects["polygons"], objects["class_id"], polygons[rows],
                                          None if cluster is None else cluster[rows]))
        per_tile.append(entry)
        if i in shown:
            pixels = tiles.read_pixels(i)
            if fmt == MASKS_FORMAT:
                m = read_tile_masks(store, i)
                tile_colours = palette(len(m["area"]))
                image = draw_tile(pixels, np.zeros((0, 8)), tile_colours, objects["polygons"],
                                  f"{names[i]}: {len(m['area'])} masks", list(zip(m["masks"], m["bbox"])))
            else:
                tile_colours = colours[cluster[rows]] if cluster is not None else palette(rows.stop - rows.start)
                image = draw_tile(pixels, polygons[rows], tile_colours, objects["polygons"],
                                  f"{names[i]}: {rows.stop - rows.start} boxes")
            _save_rgb(out_dir / "tiles" / f"{names[i]}.png", image)
    table = pd.DataFrame(per_tile)
    table.to_csv(out_dir / "tiles.csv", index=False)

    stats = {"store": str(store.path), "format": fmt, "fingerprint": store.fingerprint,
             "tile_store": str(tiles.path), "tiles": len(store), "rows": store.num_rows,
             "tiles_without_rows": int((table["rows"] == 0).sum()) if len(table) else 0,
             "rows_per_tile": _summary(table["rows"]) if len(table) else {}, "params": store.attrs.get("params")}
    _histogram(out_dir / "boxes_per_tile.png", table["rows"] if len(table) else [],
               f"{'masks' if fmt == MASKS_FORMAT else 'boxes'} per tile", "count per tile")
    if fmt == MASKS_FORMAT:
        area = store.read_all("area")
        stats["mask_area"] = _summary(area)
        stats["score"] = _summary(store.read_all("score"))
        stats["stability_score"] = _summary(store.read_all("stability_score"))
        _histogram(out_dir / "mask_area.png", area[area > 0], "mask area", "pixels", log_x=True)
    else:
        size = np.sqrt(rboxes[:, 2] * rboxes[:, 3])
        aspect = rboxes[:, 2] / np.maximum(rboxes[:, 3], 1e-6)
        stats["box_size"] = _summary(size)
        stats["aspect_ratio"] = _summary(aspect)
        _histogram(out_dir / "box_size.png", size, "box size sqrt(w*h)", "pixels", log_x=True)
        _histogram(out_dir / "aspect_ratio.png", aspect, "aspect ratio w/h", "w / h", log_x=True)
    if quality is not None:
        stats["ground_truth"] = quality.summary()
    if pseudo is not None:
        stats["clusters"] = _cluster_outputs(pseudo, tiles, rboxes, cluster, colours, quality, out_dir,
                                             num_clusters_shown, crops_per_cluster, rng)
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2, default=str) + "\n")
    log.info("inspect: %s -> %s", store.path, out_dir)
    return stats


def _cluster_outputs(pseudo, tiles, rboxes, cluster, colours, quality, out_dir: Path, num_shown: int,
                     per_cluster: int, rng) -> dict:
    k = int(pseudo.attrs["num_clusters"])
    sizes = np.bincount(cluster, minlength=k)
    order = np.argsort(-sizes, kind="stable")
    _histogram(out_dir / "cluster_sizes.png", sizes[order], f"cluster sizes ({k} clusters, largest first)",
               "cluster rank", bar=True)
    purity = {}
    if quality is not None and quality.box_cluster:
        purity = purity_per_cluster(np.concatenate(quality.box_cluster), np.concatenate(quality.box_class))
    similarity = pseudo.read_all("similarity")
    rows = []
    for c in range(k):
        members = cluster == c
        matched, top, fraction = purity.get(c, (0, -1, float("nan")))
        rows.append({"cluster": f"cluster_{c + 1}", "boxes": int(sizes[c]),
                     "mean_similarity": float(similarity[members].mean()) if members.any() else float("nan"),
                     "matched_gt_boxes": matched, "top_class": tiles.classes[top] if top >= 0 else "",
                     "top_class_fraction": fraction})
    pd.DataFrame(rows).to_csv(out_dir / "clusters.csv", index=False)

    tile_of = pseudo.tile_of_rows(np.arange(len(cluster)))
    cache: dict[int, np.ndarray] = {}
    bands = []
    for c in order[:num_shown]:
        if sizes[c] == 0:
            break
        members = np.nonzero(cluster == c)[0]
        picked = np.sort(rng.choice(members, size=min(per_cluster, len(members)), replace=False))
        crops = []
        for t in np.unique(tile_of[picked]):
            if t not in cache:
                cache[t] = tiles.read_pixels(int(t))
            crops.append(rotated_crops_rgb(cache[t], rboxes[picked[tile_of[picked] == t]], size=64, enlarge=1.5))
        crops = np.concatenate(crops)
        label = f"cluster_{c + 1}: {sizes[c]} boxes"
        grid = crop_grid(crops, columns=8, label=label)
        cv2.rectangle(grid, (0, 0), (grid.shape[1] - 1, 21), tuple(int(v) for v in colours[c]), 2)
        _save_rgb(out_dir / "clusters" / f"cluster_{c + 1}.png", grid)
        bands.append(crop_grid(crops[:12], columns=12, label=label))
    if bands:
        width = max(b.shape[1] for b in bands)
        _save_rgb(out_dir / "clusters_montage.png",
                  np.concatenate([np.pad(b, ((0, 4), (0, width - b.shape[1]), (0, 0))) for b in bands]))
    return {"num_clusters": k, "empty_clusters": int((sizes == 0).sum()), "sizes": _summary(sizes),
            "largest": {f"cluster_{c + 1}": int(sizes[c]) for c in order[:num_shown]}}


def inspect_pseudo_labels(pseudo_labels_store, out_dir, **kwargs) -> dict:
    """``inspect_store`` for a pseudo-labels store (pictures coloured by cluster, montages, purity)."""
    open_stage(pseudo_labels_store, PSEUDO_LABELS_FORMAT)  # a clear error for another kind of store
    return inspect_store(pseudo_labels_store, out_dir, **kwargs)
