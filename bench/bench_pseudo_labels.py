"""Throughput of the pseudo-label stages on this machine.

    python bench/bench_pseudo_labels.py [--quick] [--kmeans-rows 1000000] [--sklearn-rows 200000] [--out f.json]

1. Proposal stage: tiles per second of the classical (Felzenszwalb ladder) method on real 800 px DOTA tiles.
2. Embedding stage: crops per second of the batched rotated crop alone, and of crop + frozen network
   (ResNet-50 at 224 px as in the paper; ResNet-18 at 64 px as in a small default profile), on one real tile.
3. k-means: faiss spherical k-means vs scikit-learn KMeans, 256 clusters on N x 256 unit vectors (a seeded
   mixture, as normalised PCA embeddings are), same iteration budget; the partitions are compared by the
   k-means objective (squared distances to each cluster's mean), which must agree within 1 %.

Threads: torch and faiss use what OMP_NUM_THREADS allows (set it to the cores you have).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mutdet_core.pseudo_labels.clustering import assign, spherical_kmeans  # noqa: E402
from mutdet_core.pseudo_labels.crops import rotated_crops  # noqa: E402
from mutdet_core.pseudo_labels.embeddings import EmbeddingParams, build_embedder, normalise, prepare_tile  # noqa: E402
from mutdet_core.pseudo_labels.graph_segmentation import GraphSegmentationParams, propose_segments  # noqa: E402

SHARED = Path(os.environ.get("MUTDET_SHARED_DATA", REPO.parent / "shared" / "data"))
TILES = [("P1888", 0, 0), ("P0706", 311, 382), ("P0168", 600, 600), ("P0770", 600, 0)]


def real_tiles(n: int) -> list[np.ndarray]:
    out = []
    for image_id, x, y in TILES[:n]:
        rgb = cv2.imread(str(SHARED / "dota_sample" / "images" / f"{image_id}.png"))[..., ::-1]
        tile = np.empty((800, 800, 3), np.uint8)
        tile[...] = (124, 116, 104)
        crop = rgb[y:y + 800, x:x + 800]
        tile[:crop.shape[0], :crop.shape[1]] = crop
        out.append(tile)
    return out


def bench_proposals(tiles) -> dict:
    params = GraphSegmentationParams()
    start, masks = time.perf_counter(), 0
    for tile in tiles:
        masks += len(propose_segments(tile, params)["masks"])
    seconds = time.perf_counter() - start
    return {"method": "classical", "tiles": len(tiles), "seconds": round(seconds, 2),
            "tiles_per_second": round(len(tiles) / seconds, 3), "masks_per_tile": masks / len(tiles)}


def random_boxes(n: int, rng) -> np.ndarray:
    """Plausible pseudo-boxes in a 1024 px tile: sizes 10-200 px, any angle."""
    w = rng.uniform(10, 200, n)
    return np.stack([rng.uniform(0, 1024, n), rng.uniform(0, 1024, n), w, w * rng.uniform(0.2, 1, n),
                     rng.uniform(-np.pi / 2, np.pi / 2, n)], axis=1).astype(np.float32)


def bench_embeddings(tile, n_boxes: int, configs) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for arch, crop_size, batch in configs:
        params = EmbeddingParams(arch=arch, crop_size=crop_size, batch_size=batch)
        net = build_embedder(params, "cpu")
        image = normalise(prepare_tile(tile, 1024)[0], "cpu")
        boxes = torch.as_tensor(random_boxes(n_boxes, rng))
        with torch.inference_mode():
            net(rotated_crops(image, boxes[:2], crop_size))  # warm-up
            start = time.perf_counter()
            for s in range(0, n_boxes, batch):
                rotated_crops(image, boxes[s:s + batch], crop_size)
            crop_seconds = time.perf_counter() - start
            start = time.perf_counter()
            for s in range(0, n_boxes, batch):
                net(rotated_crops(image, boxes[s:s + batch], crop_size))
            seconds = time.perf_counter() - start
        out.append({"arch": arch, "crop_size": crop_size, "batch": batch, "crops": n_boxes,
                    "crop_only_per_second": round(n_boxes / crop_seconds, 1),
                    "crops_per_second": round(n_boxes / seconds, 2)})
    return out


def unit_mixture(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype(np.float32)
    x = centres[rng.integers(0, k, n)] * 0.35 + rng.normal(size=(n, d)).astype(np.float32) * 0.1
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def partition_inertia(x: np.ndarray, label: np.ndarray, k: int) -> float:
    sums = np.zeros((k, x.shape[1]), np.float64)
    np.add.at(sums, label, x)
    counts = np.bincount(label, minlength=k)
    # sum ||x - mean||^2 = sum ||x||^2 - sum_c ||sum_c||^2 / n_c
    return float((x.astype(np.float64) ** 2).sum() - ((sums ** 2).sum(1)[counts > 0] / counts[counts > 0]).sum())


def bench_kmeans(rows: int, sklearn_rows: int, k: int = 256, niter: int = 20) -> dict:
    from sklearn.cluster import KMeans

    x = unit_mixture(rows, 256, 1000)
    start = time.perf_counter()
    centroids = spherical_kmeans(x, k, niter=niter, seed=0, use_gpu=False)
    faiss_seconds = time.perf_counter() - start
    result = {"rows": rows, "dim": 256, "clusters": k, "iterations": niter,
              "faiss_seconds": round(faiss_seconds, 1)}
    xs = x[:sklearn_rows]
    label_faiss = assign(xs, centroids)[0] if sklearn_rows == rows else \
        assign(xs, spherical_kmeans(xs, k, niter=niter, seed=0, use_gpu=False))[0]
    start = time.perf_counter()
    sk = KMeans(k, n_init=1, max_iter=niter, random_state=0, algorithm="lloyd").fit(xs)
    result.update({"sklearn_rows": sklearn_rows, "sklearn_seconds": round(time.perf_counter() - start, 1)})
    ours, theirs = partition_inertia(xs, label_faiss, k), partition_inertia(xs, sk.labels_, k)
    result.update({"faiss_inertia": round(ours, 2), "sklearn_inertia": round(theirs, 2),
                   "relative_difference": round((ours - theirs) / theirs, 5),
                   "within_1_percent": abs(ours - theirs) / theirs < 0.01})
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a minute)")
    parser.add_argument("--kmeans-rows", type=int, default=1_000_000)
    parser.add_argument("--sklearn-rows", type=int, default=None,
                        help="rows given to scikit-learn (default: all; 200000 if 1M is too slow here)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = 50_000 if args.quick else args.kmeans_rows
    report = {"threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    tiles = real_tiles(2 if args.quick else 4)
    report["proposals"] = bench_proposals(tiles)
    print(json.dumps(report["proposals"]), flush=True)
    report["embeddings"] = bench_embeddings(tiles[0], 32 if args.quick else 128,
                                            [("resnet50", 224, 32), ("resnet18", 64, 64)])
    print(json.dumps(report["embeddings"]), flush=True)
    report["kmeans"] = bench_kmeans(rows, min(args.sklearn_rows or rows, rows))
    print(json.dumps(report["kmeans"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
