"""Look at pseudo-labels: pictures, crop montages, statistics and, where there is ground truth, quality.

``inspect_store(path, out_dir)`` works on a masks, boxes, embeddings or pseudo-labels store (the CLI's
``mutdet inspect STORE``) and writes::

    out_dir/
        report.md             the human-readable summary: proposal cap, recall (overall, per size bucket,
                              per image, per class), purity and the matched boxes behind it, the pictures
        stats.json            the same figures and more (keys below)
        tiles.csv             per tile: image, boxes (masks), ground-truth objects, recalled objects at each
                              IoU, matched boxes, whether the tile's proposals hit each stage's cap
        images.csv            per image: objects, recall at each IoU, mean best IoU (labelled stores)
        tiles/<tile>.png      a seeded sample of tiles with a legend strip underneath: ground truth found
                              (white) / missed (red); pseudo-boxes coloured by cluster (pseudo-labels),
                              by match (boxes: cyan matches ground truth, yellow does not), filled masks
        boxes_per_tile.png, box_size.png, aspect_ratio.png      histograms
        cluster_sizes.png, clusters.csv, clusters/cluster_<k>.png, clusters_montage.png   (pseudo-labels;
                              one montage row per cluster, with its name and its overlay colour)

``stats.json`` keys: ``store``, ``format``, ``fingerprint``, ``tile_store``, ``tiles``, ``rows``,
``tiles_without_rows``, ``rows_per_tile``, ``params``, ``proposal_cap`` ({stage: {key, cap, tiles,
tiles_at_cap, tiles_at_cap_names}}), ``box_size``, ``aspect_ratio`` (or ``mask_area``, ``score``,
``stability_score``), ``ground_truth`` (``quality.QualityAccumulator.summary``), ``clusters``.

Box size is sqrt(w * h) in tile pixels; aspect ratio is w / h >= 1 (le90).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..store_schema import cluster_name
from ..tiling.store import TileStore
from .artifact import StageError, check_input, open_stage
from .boxes import FORMAT as BOXES_FORMAT
from .clustering import PSEUDO_LABELS_FORMAT
from .crops import rotated_crops_rgb
from .inspection_report import write_report
from .masks import FORMAT as MASKS_FORMAT, read_tile_masks
from .pictures import (BOX_MATCHED, BOX_UNMATCHED, GT_FOUND, LegendEntry, cluster_legend, crop_grid, draw_tile,
                       ground_truth_legend, histogram, palette, save_rgb)
from .quality import RECALL_IOUS, QualityAccumulator, match_tile, purity_per_cluster
from .stores import EMBEDDINGS_FORMAT

log = logging.getLogger(__name__)

FORMATS = (MASKS_FORMAT, BOXES_FORMAT, EMBEDDINGS_FORMAT, PSEUDO_LABELS_FORMAT)
# per-tile caps a stage's params may hold (classical proposer: max_masks; boxes stage: max_boxes)
CAP_KEYS = ("max_masks", "max_proposals", "max_boxes")
MAX_LISTED = 1000  # tile names listed per cap in stats.json (tiles.csv has every tile)

__all__ = ["inspect_store", "inspect_pseudo_labels", "palette", "draw_tile", "crop_grid", "proposal_caps",
           "linked_tile_store", "linked_boxes_store"]


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


def _stage_cap(stage_store) -> dict | None:
    """Which tiles of one stage store hold as many rows as its per-tile cap (None: no cap)."""
    params = stage_store.attrs.get("params") or {}
    key = next((k for k in CAP_KEYS if isinstance(params.get(k), (int, np.integer))), None)
    if key is None:
        return None
    cap = int(params[key])
    counts = np.diff(stage_store.offsets)
    at_cap = np.nonzero(counts >= cap)[0]
    names = stage_store.index["tile"].tolist()
    return {"key": key, "cap": cap, "tiles": int(len(counts)), "tiles_at_cap": int(len(at_cap)),
            "tiles_at_cap_names": [names[i] for i in at_cap[:MAX_LISTED]], "at_cap": counts >= cap}


def proposal_caps(store, boxes=None) -> dict:
    """``{stage: {key, cap, tiles, tiles_at_cap, tiles_at_cap_names, at_cap (T,) bool}}`` for the masks
    stage (its proposer's ``max_masks``) and the boxes stage (``max_boxes``) behind ``store``; a stage
    without a cap is left out, a masks store that cannot be opened any more is ``{"error": ...}``. A tile
    at the cap may have lost objects to it (the proposers keep the largest first)."""
    fmt = store.attrs["format"]
    if fmt == MASKS_FORMAT:
        masks_store, boxes = store, None
    else:
        masks_store = None
        entry = (boxes.attrs.get("inputs") or {}).get("masks") if boxes is not None else None
        if entry is not None:  # ground-truth (oracle) boxes have no masks stage
            try:
                masks_store = open_stage(entry["path"], MASKS_FORMAT)
            except (StageError, OSError) as err:
                masks_store = err
    out = {}
    if isinstance(masks_store, Exception):
        out["masks"] = {"error": f"the masks store could not be read ({masks_store})"}
    elif masks_store is not None:
        cap = _stage_cap(masks_store)
        if cap is not None and masks_store.index["tile"].tolist() == store.index["tile"].tolist():
            out["masks"] = cap
    if boxes is not None and (cap := _stage_cap(boxes)) is not None:
        out["boxes"] = cap
    return out


def inspect_store(path, out_dir, num_tiles: int = 8, num_clusters_shown: int = 8, crops_per_cluster: int = 24,
                  iou_thr: float = 0.5, seed: int = 0, tile_store=None, boxes_store=None) -> dict:
    """Pictures, ``report.md`` and statistics of any pseudo-label stage store; returns the statistics
    written to ``stats.json``. ``tile_store`` / ``boxes_store`` override the recorded input paths (moved
    stores)."""
    store = open_stage(path, FORMATS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tiles = linked_tile_store(store, tile_store)
    fmt = store.attrs["format"]
    boxes = store if fmt == BOXES_FORMAT else (linked_boxes_store(store, boxes_store) if fmt != MASKS_FORMAT else None)
    pseudo = store if fmt == PSEUDO_LABELS_FORMAT else None
    num_classes = int(pseudo.attrs["num_clusters"]) if pseudo is not None else 0
    cluster_names = _cluster_names(pseudo)
    colours = palette(num_classes)
    rng = np.random.default_rng(seed)
    with_rows = np.nonzero(np.diff(store.offsets) > 0)[0]
    pool = with_rows if len(with_rows) >= num_tiles else np.arange(len(store))
    shown = set(rng.choice(pool, size=min(num_tiles, len(pool)), replace=False).tolist()) if len(pool) else set()

    labelled = any(tiles.read_objects(i)["polygons"].shape[0] for i in range(len(tiles)))
    quality = QualityAccumulator(tiles.classes, iou_thr) if labelled and boxes is not None else None
    caps = proposal_caps(store, boxes)
    rboxes = boxes.read_all("rbox") if boxes is not None else np.zeros((0, 5), np.float32)
    polygons = boxes.read_all("polygon") if boxes is not None else None
    cluster = pseudo.read_all("pseudo_class") if pseudo is not None else None
    names = store.index["tile"].tolist()
    image_ids = tiles.index["image_id"].astype(str).tolist()
    per_tile = []
    for i in range(len(store)):
        rows = store.rows(i)
        objects = tiles.read_objects(i)
        entry = {"tile": names[i], "image_id": image_ids[i], "rows": rows.stop - rows.start,
                 "gt": len(objects["polygons"])}
        match = None
        if quality is not None:
            match = match_tile(objects["polygons"], polygons[rows])
            entry.update(quality.add_tile(objects["polygons"], objects["class_id"], polygons[rows],
                                          None if cluster is None else cluster[rows], image_ids[i], match))
        entry.update({f"{stage}_at_cap": bool(c["at_cap"][i]) for stage, c in caps.items() if "at_cap" in c})
        per_tile.append(entry)
        if i in shown:
            title = f"{names[i]}: {rows.stop - rows.start} {'masks' if fmt == MASKS_FORMAT else 'boxes'}"
            at = [f"{stage} cap {c['cap']}" for stage, c in caps.items() if "at_cap" in c and c["at_cap"][i]]
            title += f" (at the {', '.join(at)})" if at else ""
            image = _draw_tile(store, fmt, tiles.read_pixels(i), objects, polygons, rows, cluster, colours,
                               cluster_names, match, iou_thr, labelled, i, title)
            save_rgb(out_dir / "tiles" / f"{names[i]}.png", image)
    table = pd.DataFrame(per_tile)
    table.to_csv(out_dir / "tiles.csv", index=False)

    stats = {"store": str(store.path), "format": fmt, "fingerprint": store.fingerprint,
             "tile_store": str(tiles.path), "tiles": len(store), "rows": store.num_rows,
             "tiles_without_rows": int((table["rows"] == 0).sum()) if len(table) else 0,
             "rows_per_tile": _summary(table["rows"]) if len(table) else {}, "params": store.attrs.get("params"),
             "proposal_cap": {stage: {k: v for k, v in c.items() if k != "at_cap"} for stage, c in caps.items()}}
    histogram(out_dir / "boxes_per_tile.png", table["rows"] if len(table) else [],
              f"{'masks' if fmt == MASKS_FORMAT else 'boxes'} per tile", "count per tile")
    if fmt == MASKS_FORMAT:
        area = store.read_all("area")
        stats["mask_area"] = _summary(area)
        stats["score"] = _summary(store.read_all("score"))
        stats["stability_score"] = _summary(store.read_all("stability_score"))
        histogram(out_dir / "mask_area.png", area[area > 0], "mask area", "pixels", log_x=True)
    else:
        size = np.sqrt(rboxes[:, 2] * rboxes[:, 3])
        aspect = rboxes[:, 2] / np.maximum(rboxes[:, 3], 1e-6)
        stats["box_size"] = _summary(size)
        stats["aspect_ratio"] = _summary(aspect)
        histogram(out_dir / "box_size.png", size, "box size sqrt(w*h)", "pixels", log_x=True)
        histogram(out_dir / "aspect_ratio.png", aspect, "aspect ratio w/h", "w / h", log_x=True)
    if quality is not None:
        stats["ground_truth"] = quality.summary()
        _images_csv(stats["ground_truth"], out_dir / "images.csv")
    cluster_rows = []
    if pseudo is not None:
        stats["clusters"], cluster_rows = _cluster_outputs(pseudo, tiles, rboxes, cluster, colours, cluster_names,
                                                           quality, out_dir, num_clusters_shown, crops_per_cluster,
                                                           rng)
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2, default=str) + "\n")
    write_report(stats, out_dir, pictures=sorted(p.name for p in (out_dir / "tiles").glob("*.png")),
                 clusters=cluster_rows)
    log.info("inspect: %s -> %s", store.path, out_dir)
    return stats


def _cluster_names(pseudo) -> list[str]:
    """The names the export and the pre-training give the clusters (the store's ``classes``)."""
    if pseudo is None:
        return []
    k = int(pseudo.attrs["num_clusters"])
    names = list(pseudo.attrs.get("classes") or [])
    return names if len(names) == k else [cluster_name(c) for c in range(k)]


def _draw_tile(store, fmt, pixels, objects, polygons, rows, cluster, colours, cluster_names, match, iou_thr,
               labelled, i, title) -> np.ndarray:
    """One overlay with its legend (colour scheme in ``pictures``)."""
    gt = objects["polygons"]
    legend = []
    found = None
    if match is not None:
        found = match["gt_best"] >= iou_thr
        legend += ground_truth_legend(iou_thr, int(found.sum()), int((~found).sum()))
    elif labelled:
        legend.append(LegendEntry(f"ground truth ({len(gt)})", [GT_FOUND], 1))
    if fmt == MASKS_FORMAT:
        m = read_tile_masks(store, i)
        tile_colours = palette(len(m["area"]))
        legend.append(LegendEntry(f"masks, one colour each ({len(m['area'])})", list(tile_colours[:3]), filled=True))
        return draw_tile(pixels, np.zeros((0, 8)), tile_colours, gt, title, list(zip(m["masks"], m["bbox"])),
                         legend=legend)
    if cluster is not None:
        tile_colours = colours[cluster[rows]]
        legend.append(LegendEntry("pseudo-boxes by cluster:"))
        legend += cluster_legend(cluster[rows], colours, cluster_names)
    else:
        n = rows.stop - rows.start
        hit = match["box_best"] >= iou_thr if match is not None else np.zeros(n, bool)
        tile_colours = np.where(hit[:, None], np.array(BOX_MATCHED), np.array(BOX_UNMATCHED))
        if match is not None:
            legend += [LegendEntry(f"pseudo-box matching ground truth ({int(hit.sum())})", [BOX_MATCHED]),
                       LegendEntry(f"pseudo-box, no match ({int((~hit).sum())})", [BOX_UNMATCHED])]
        else:
            legend.append(LegendEntry(f"pseudo-box ({n})", [BOX_UNMATCHED]))
    return draw_tile(pixels, polygons[rows], tile_colours, gt, title, gt_found=found, legend=legend)


def _images_csv(summary: dict, path: Path) -> None:
    columns = ["objects", "recall", *[f"recall_at_{t:g}" for t in RECALL_IOUS], "mean_best_iou"]
    rows = [{"image_id": name, **{c: r.get(c) for c in columns}}
            for name, r in summary.get("recall_per_image", {}).items()]
    pd.DataFrame(rows, columns=["image_id", *columns]).to_csv(path, index=False)


def _cluster_outputs(pseudo, tiles, rboxes, cluster, colours, names, quality, out_dir: Path, num_shown: int,
                     per_cluster: int, rng) -> tuple[dict, list[dict]]:
    """Cluster pictures and ``clusters.csv``; returns the ``stats["clusters"]`` summary and the csv rows,
    largest cluster first."""
    k = int(pseudo.attrs["num_clusters"])
    sizes = np.bincount(cluster, minlength=k)
    order = np.argsort(-sizes, kind="stable")
    histogram(out_dir / "cluster_sizes.png", sizes[order], f"cluster sizes ({k} clusters, largest first)",
              "cluster rank", bar=True)
    purity = {}
    if quality is not None:
        matched_cluster, matched_class = quality.matched_clusters()
        if len(matched_cluster):
            purity = purity_per_cluster(matched_cluster, matched_class)
    similarity = pseudo.read_all("similarity")
    rows = []
    for c in range(k):
        members = cluster == c
        matched, top, fraction = purity.get(c, (0, -1, float("nan")))
        rows.append({"cluster": names[c], "boxes": int(sizes[c]),
                     "mean_similarity": float(similarity[members].mean()) if members.any() else float("nan"),
                     "matched_gt_boxes": matched, "top_class": tiles.classes[top] if top >= 0 else "",
                     "top_class_fraction": fraction,
                     "colour": "#%02x%02x%02x" % tuple(int(v) for v in colours[c])})
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
        matched, top, fraction = purity.get(int(c), (0, -1, float("nan")))
        label = f"{names[c]}: {sizes[c]} boxes"
        if top >= 0:
            label += f", {matched} matched: {100 * fraction:.0f}% {tiles.classes[top]}"
        save_rgb(out_dir / "clusters" / f"{names[c]}.png", crop_grid(crops, columns=8, label=label, colour=colours[c]))
        bands.append(crop_grid(crops[:12], columns=12, label=label, colour=colours[c]))
    if bands:
        width = max(b.shape[1] for b in bands)
        save_rgb(out_dir / "clusters_montage.png",
                 np.concatenate([np.pad(b, ((0, 4), (0, width - b.shape[1]), (0, 0))) for b in bands]))
    summary = {"num_clusters": k, "empty_clusters": int((sizes == 0).sum()), "sizes": _summary(sizes),
               "largest": {names[c]: int(sizes[c]) for c in order[:num_shown]}}
    return summary, [rows[c] for c in order]


def inspect_pseudo_labels(pseudo_labels_store, out_dir, **kwargs) -> dict:
    """``inspect_store`` for a pseudo-labels store (pictures coloured by cluster, montages, purity)."""
    open_stage(pseudo_labels_store, PSEUDO_LABELS_FORMAT)  # a clear error for another kind of store
    return inspect_store(pseudo_labels_store, out_dir, **kwargs)
