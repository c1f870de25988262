"""Checkpoint-free proposals side by side: recall of ground truth per method at equal box counts.

    python bench/bench_proposals.py [--data dota dota_dense synthetic] [--counts 100 300 1000] [--every 1] [--out f.json]

Methods: ``regions`` (the default, region_proposals.py), ``classical`` (the earlier Felzenszwalb ladder,
graph_segmentation.py) and OpenCV ``selective_search`` (fast), each with its schema defaults except the cap.
Data:
* ``dota``: the 6 real DOTA sample images (../shared/data/dota_sample), tiled as the pipeline does (800 px,
  gap 200: 34 tiles, 1,536 objects); the ``regions`` settings were chosen on these;
* ``dota_dense``: the held-out check on real imagery, never used for tuning: ../shared/data/dota_dense
  (P0003-P0005, dense vehicle scenes, and one 1024 px tile of P1478), tiled the same way;
* ``synthetic``: 8 generated 800 x 800 scenes (mutdet_core.synthetic, seed 0, the default run's classes),
  one tile each.

For each method and cap K (100, 300, 1000 boxes per tile) the method's first K proposals (its own ranking,
as ``max_masks = K`` gives them), the boxes stage turns the masks into oriented boxes (largest first, at most 1000), and a
ground-truth object is recalled at IoU t when some box overlaps it with rotated IoU >= t (quality.py).
Reported: recall at IoU 0.3 / 0.5 / 0.7, recall at 0.5 per object-size bucket (sqrt of the oriented box
area: < 16, 16-32, 32-64, 64-128, >= 128 px) and per image, boxes per tile, and seconds per tile at the largest
cap (proposals alone;
one process, ``cv2.setNumThreads(1)``, OMP_NUM_THREADS as set).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mutdet_core.pseudo_labels.boxes import tile_boxes  # noqa: E402
from mutdet_core.pseudo_labels.masks import build_proposer  # noqa: E402
from mutdet_core.pseudo_labels.quality import iou_matrix  # noqa: E402

SHARED = Path(os.environ.get("MUTDET_SHARED_DATA", REPO.parent / "shared" / "data"))
METHODS = ("regions", "classical", "selective_search")
BUCKETS = (0, 16, 32, 64, 128, np.inf)
SYNTHETIC_CLASSES = ["plane", "large-vehicle", "ship", "tennis-court", "storage-tank"]


def dota_tiles(work: Path, folder: str = "dota_sample"):
    """A flat DOTA folder of ../shared/data as the pipeline tiles it:
    ``[(tile name, image id, pixels, gt polygons (G, 8))]``."""
    from mutdet_core.tiling.stage import tile_dataset_split
    from mutdet_core.tiling.store import TileStore

    entry = {"source": "dota", "root": str(SHARED / folder), "classes": "dota_v1", "splits": ["all"],
             "labelled": True, "tiling": {"sizes": [800], "gaps": [200], "rates": [1.0]}}
    path = tile_dataset_split(entry, folder, "all", work / f"{folder}_tiles.zarr", overwrite=True,
                              root=SHARED / folder)
    store = TileStore.open(path)
    return [(store.index.tile[i], store.index.image_id[i], store.read_pixels(i), store.read_objects(i)["polygons"])
            for i in range(len(store))]


def synthetic_tiles(work: Path, count: int = 8):
    """``count`` generated 800 x 800 scenes, one tile each, same tuple form as ``dota_tiles``."""
    from mutdet_core.datasets.dota import read_dota_folder
    from mutdet_core.synthetic.dataset import generate_synthetic_dataset

    generate_synthetic_dataset(work / "synthetic", {"train": count}, image_size=(800, 800), seed=0,
                               classes=SYNTHETIC_CLASSES, gsd_range=(0.2, 0.4))
    records = read_dota_folder(work / "synthetic" / "train" / "images", work / "synthetic" / "train" / "labelTxt")
    out = []
    for r in sorted(records, key=lambda r: r.image_id):
        pixels = cv2.imread(str(r.image_path), cv2.IMREAD_COLOR)[..., ::-1]
        out.append((r.image_id, r.image_id, np.ascontiguousarray(pixels), r.polygons))
    return out


def object_size(polygons: np.ndarray) -> np.ndarray:
    """sqrt of each polygon's minimum-area-rectangle area, px."""
    return np.array([np.sqrt(np.prod(cv2.minAreaRect(p.reshape(4, 2).astype(np.float32))[1])) for p in polygons])


def evaluate(method: str, caps: list[int], tiles) -> list[dict]:
    """One row per cap. Every method returns its proposals best first and caps by truncating that list
    (after its NMS), so the first K proposals of one run at the largest cap are the run at cap K."""
    propose = build_proposer(method, {"max_masks": max(caps)}, "cpu")
    best = {cap: [] for cap in caps}
    sizes, images, seconds, boxes = [], [], [], {cap: [] for cap in caps}
    for _, image_id, pixels, gt in tiles:
        start = time.perf_counter()
        result = propose(pixels)
        seconds.append(time.perf_counter() - start)
        for cap in caps:
            first = {key: (value[:cap]) for key, value in result.items()}
            polygons = tile_boxes(first, 0, 1000)["polygon"]
            boxes[cap].append(len(polygons))
            iou = iou_matrix(gt, polygons)
            best[cap].append(iou.max(axis=1) if iou.shape[1] else np.zeros(len(gt)))
        sizes.append(object_size(gt))
        images += [image_id] * len(gt)
    sizes, images = np.concatenate(sizes), np.asarray(images)
    rows = []
    for cap in caps:
        b = np.concatenate(best[cap])
        by_size = {}
        for lo, hi in zip(BUCKETS[:-1], BUCKETS[1:]):
            sel = (sizes >= lo) & (sizes < hi)
            if sel.any():
                by_size[f"{lo:g}-{hi:g}"] = {"objects": int(sel.sum()), "recall_0.5": round(float((b[sel] >= .5).mean()), 3)}
        rows.append({
            "method": method, "cap": cap, "objects": int(len(b)),
            **{f"recall_{t}": round(float((b >= t).mean()), 3) for t in (0.3, 0.5, 0.7)},
            "recall_0.5_by_size": by_size,
            "recall_0.5_by_image": {im: round(float((b[images == im] >= .5).mean()), 3) for im in np.unique(images)},
            "boxes_per_tile": round(float(np.mean(boxes[cap])), 1),
            "seconds_per_tile_at_largest_cap": round(float(np.mean(seconds)), 2),
        })
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", default=["dota", "dota_dense", "synthetic"],
                        choices=["dota", "dota_dense", "synthetic"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--counts", nargs="+", type=int, default=[100, 300, 1000])
    parser.add_argument("--every", type=int, default=1, help="use every n-th tile (quick looks)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            if data == "synthetic":
                tiles = synthetic_tiles(Path(tmp))
            else:
                tiles = dota_tiles(Path(tmp), "dota_sample" if data == "dota" else "dota_dense")
            tiles = tiles[::args.every]
            for method in args.methods:
                for row in evaluate(method, sorted(args.counts), tiles):
                    row = {"data": data, "tiles": len(tiles), **row}
                    results.append(row)
                    print(f"{data:9s} {method:16s} K={row['cap']:5d}  R@.3 {row['recall_0.3']:.3f}  "
                          f"R@.5 {row['recall_0.5']:.3f}  R@.7 {row['recall_0.7']:.3f}  "
                          f"boxes/tile {row['boxes_per_tile']:7.1f}  s/tile {row['seconds_per_tile_at_largest_cap']:.2f}",
                          flush=True)
                    print("    by size", json.dumps(row["recall_0.5_by_size"]), "\n    by image",
                          json.dumps(row["recall_0.5_by_image"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
