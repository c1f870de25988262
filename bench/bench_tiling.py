"""Tiling throughput on the real DOTA sample against plain decoding of the same images.

The floor is decoding: tiling (decode + crop + pad + compress + write Zarr) should cost at most 2x the
decode time. Also reports the peak resident memory of a worker process that tiles one split.

    .venv/bin/python bench/bench_tiling.py [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "dota_sample"


def _decode_all(images):
    import cv2

    for p in images:
        cv2.imread(str(p))


def _tile_all(out, threads):
    from mutdet_core.datasets.classes import get_class_list
    from mutdet_core.datasets.dota import read_dota_folder
    from mutdet_core.tiling import TilingParams
    from mutdet_core.tiling.tiler import tile_split

    classes = list(get_class_list("dota_v1").names)
    records = read_dota_folder(DATA / "images", DATA / "labelTxt", class_names=classes)
    tile_split(records, out, TilingParams(), classes, threads=threads, progress=False)


def _worker_peak(out, threads, queue):
    _tile_all(out, threads)
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"real fixtures not found at {DATA}")
    import cv2

    cv2.setNumThreads(1)
    images = sorted((DATA / "images").glob("*.png"))
    megapixels = sum(cv2.imread(str(p)).shape[0] * cv2.imread(str(p)).shape[1] for p in images) / 1e6
    decode, tile = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        _decode_all(images)
        decode.append(time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            _tile_all(Path(tmp) / "s.zarr", args.threads)
            tile.append(time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_worker_peak, args=(Path(tmp) / "s.zarr", args.threads, q))
        p.start()
        peak = q.get()
        p.join()
    result = {
        "images": len(images), "megapixels": round(megapixels, 2), "threads": args.threads,
        "decode_s": round(min(decode), 3), "tile_s": round(min(tile), 3),
        "tile_over_decode": round(min(tile) / min(decode), 2),
        "tiling_megapixels_per_s": round(megapixels / min(tile), 1),
        "worker_peak_rss_mb": round(peak, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
