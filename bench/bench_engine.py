"""Training throughput through the engine on CPU: iterations per second, and the engine's overhead.

A synthetic tile store (random pixels, random oriented boxes; written with the real ``TileStoreWriter``, so
Zarr decoding is included) feeds ``TileDetectionDataset`` (flips on) -> ``build_train_loader`` ->
``collate_detection`` -> ``engine.train`` with the tiny ARS-DETR of ``mutdet_core.models.build_detector``
(a small stand-in if that module is missing). The same iterations are then run as a bare loop (forward,
backward, clip, AdamW step; data pre-loaded) to show what the engine adds (sampling, logging, checkpoints).

    .venv/bin/python bench/bench_engine.py [--iters 40] [--batch-size 2] [--size 128] [--threads 1]

Prints a readable summary and one JSON line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mutdet_core.data import TileDetectionDataset, build_transforms, collate_detection  # noqa: E402
from mutdet_core.engine import TrainConfig, build_train_loader, train  # noqa: E402
from mutdet_core.geometry import obb2poly  # noqa: E402
from mutdet_core.tiling.store import TileStore, TileStoreWriter  # noqa: E402

TINY_DETECTOR = dict(num_classes=3, backbone={"name": "tiny", "width": 16}, d_model=64, n_heads=4, ffn_dim=128,
                     num_encoder_layers=2, num_decoder_layers=2, num_queries=30, num_dn_queries=20)


def synthetic_store(path: Path, tiles: int, size: int, seed: int = 0) -> TileStore:
    rng = np.random.default_rng(seed)
    index = pd.DataFrame({"tile": [f"img{i}__1__0___0" for i in range(tiles)],
                          "image_id": [f"img{i}" for i in range(tiles)], "x": 0, "y": 0, "size": size})
    counts = rng.integers(1, 8, tiles)
    writer = TileStoreWriter(path, index, counts, {"classes": ["a", "b", "c"], "dataset": "bench"})
    for i, n in enumerate(counts):
        w = rng.uniform(8, size / 4, n)
        obbs = np.stack([rng.uniform(size / 4, 3 * size / 4, n), rng.uniform(size / 4, 3 * size / 4, n), w,
                         w / rng.uniform(1.2, 4, n), rng.uniform(-np.pi / 2, np.pi / 2, n)], 1)
        writer.write_tile(i, rng.integers(0, 255, (size, size, 3), dtype=np.uint8), obb2poly(obbs),
                          rng.integers(0, 3, n), np.zeros(n))
    return TileStore.open(writer.finish())


def build_model():
    try:
        from mutdet_core.models.detector import build_detector
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_engine import TinyDetector, TinySetCriterion

        return TinyDetector(), TinySetCriterion(), "stand-in TinyDetector (tests/test_engine.py)"
    model, criterion, _ = build_detector(TINY_DETECTOR)
    return model, criterion, f"tiny ARS-DETR {TINY_DETECTOR}"


def bare_loop(model, criterion, batches, cfg: TrainConfig) -> float:
    """Seconds for the same steps without the engine (data already collated)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    start = time.perf_counter()
    for batch in batches:
        losses = criterion(model(batch.images, batch.masks, batch.targets), batch.targets)
        total = sum(criterion.weight_dict[k] * v for k, v in losses.items() if k in criterion.weight_dict)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_max_norm)
        optimizer.step()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=40, help="training iterations (one epoch)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--size", type=int, default=128, help="tile size in pixels")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = synthetic_store(tmp / "bench.zarr", args.iters * args.batch_size, args.size)
        dataset = TileDetectionDataset(store, build_transforms(resize=None))
        cfg = TrainConfig(epochs=1, batch_size=args.batch_size, warmup_iters=10, log_interval=10,
                          num_workers=args.workers, progress_bar=False)
        torch.manual_seed(0)
        model, criterion, name = build_model()
        loader = build_train_loader(dataset, cfg.batch_size, collate_detection, seed=0, num_workers=args.workers)
        start = time.perf_counter()
        train(model, criterion, loader, cfg, tmp / "run", "cpu")
        engine_s = time.perf_counter() - start

        torch.manual_seed(0)
        model, criterion, _ = build_model()
        batches = list(build_train_loader(dataset, cfg.batch_size, collate_detection, seed=0, num_workers=0))
        bare_s = bare_loop(model, criterion, batches, cfg)

    result = {"model": name, "iters": args.iters, "batch_size": args.batch_size, "tile_size": args.size,
              "threads": args.threads, "workers": args.workers, "engine_it_per_s": args.iters / engine_s,
              "bare_it_per_s": args.iters / bare_s, "engine_overhead_s": engine_s - bare_s,
              "torch": torch.__version__, "cpus": os.cpu_count()}
    print(f"model: {name}")
    print(f"{args.iters} iterations, batch {args.batch_size}, {args.size}px tiles, {args.threads} thread(s)")
    print(f"engine: {result['engine_it_per_s']:.2f} it/s ({engine_s:.2f} s, includes data loading, logging, "
          f"2 checkpoints); bare loop on pre-collated batches: {result['bare_it_per_s']:.2f} it/s")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
