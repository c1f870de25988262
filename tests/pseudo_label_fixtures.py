"""Real DOTA tiles in a tile store, and the pseudo-label chain built on them, for tests/test_pseudo_*.py.

The tile store is written with the tiling package's ``TileStoreWriter`` (the format the tiler writes):
800 px windows of real DOTA images with their ground-truth objects (IoF >= 0.7, as the tiler keeps them),
plus one uniform tile that yields no mask, so every stage sees an empty tile.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mutdet_core.datasets.dota import read_dota_txt
from mutdet_core.tiling.store import TileStoreWriter
from mutdet_core.tiling.windows import assign_objects, tile_name

# (image id, x, y): a car park with 64 vehicles (P1888 is 712x557: padded), a marina with ~300 ships.
WINDOWS = [("P1888", 0, 0), ("P0706", 311, 382)]
PADDING_RGB = (124, 116, 104)
SIZE = 800

# Small, fast settings of every stage for tests (2 shared cores).
FAST_CLASSICAL = {"num_scales": 5, "max_masks": 60}
FAST_EMBEDDING = {"arch": "resnet18", "input_size": 512, "crop_size": 32, "batch_size": 32}


def write_dota_tile_store(shared_data: Path, path: Path, windows=WINDOWS, blank: bool = True,
                          overwrite: bool = False) -> Path:
    """A tile store of real DOTA windows (and a uniform ``blank`` tile) at ``path``."""
    classes, rows, tiles = [], [], []
    for image_id, x, y in windows:
        image_path = shared_data / "dota_sample" / "images" / f"{image_id}.png"
        record = read_dota_txt(shared_data / "dota_sample" / "labelTxt" / f"{image_id}.txt", image_path)
        rgb = cv2.imread(str(image_path), cv2.IMREAD_COLOR)[..., ::-1]
        pixels = np.empty((SIZE, SIZE, 3), np.uint8)
        pixels[...] = PADDING_RGB
        crop = rgb[y:y + SIZE, x:x + SIZE]
        pixels[:crop.shape[0], :crop.shape[1]] = crop
        window = np.array([[x, y, x + SIZE, y + SIZE]])
        kept = assign_objects(record.polygons.astype(np.float32), window, 0.7)[0]
        for name in record.classes:
            if name not in classes:
                classes.append(name)
        polygons = record.polygons[kept.indices].astype(np.float32) - np.array([x, y] * 4, np.float32)
        difficulty = record.difficulty[kept.indices].copy()
        difficulty[kept.truncated] = 2
        class_id = [classes.index(record.classes[j]) for j in kept.indices]
        rows.append({"tile": tile_name(image_id, window[0]), "image_id": image_id, "x": x, "y": y, "size": SIZE})
        tiles.append((pixels, polygons, np.array(class_id, np.int16), difficulty.astype(np.int8)))
    if blank:
        pixels = np.empty((SIZE, SIZE, 3), np.uint8)
        pixels[...] = PADDING_RGB
        rows.append({"tile": "blank__800__0___0", "image_id": "blank", "x": 0, "y": 0, "size": SIZE})
        tiles.append((pixels, np.zeros((0, 8), np.float32), np.zeros(0, np.int16), np.zeros(0, np.int8)))
    attrs = {"dataset": "dota_sample", "split": "test", "classes": classes, "sizes": [SIZE], "gaps": [200],
             "rates": [1.0], "fingerprint": "test-" + "-".join(f"{i}{x}{y}" for i, x, y in windows)}
    writer = TileStoreWriter(path, pd.DataFrame(rows), [len(t[1]) for t in tiles], attrs, overwrite=overwrite)
    for i, tile in enumerate(tiles):
        writer.write_tile(i, *tile)
    return writer.finish()


_BUILT: dict = {}  # built once per test session, shared by every test module that imports the fixtures


@pytest.fixture(scope="module")
def tile_store_path(shared_data, tmp_path_factory) -> Path:
    if "tiles" not in _BUILT:
        _BUILT["tiles"] = write_dota_tile_store(shared_data, tmp_path_factory.mktemp("tiles") / "test.zarr")
    return _BUILT["tiles"]


@pytest.fixture(scope="module")
def chain(tile_store_path, tmp_path_factory) -> dict:
    """Every stage run once on the real tiles with small settings: ``{stage name: store path}``.
    Tests must not modify these stores (they are shared)."""
    from mutdet_core.pseudo_labels import (assign_pseudo_labels, extract_embeddings, fit_clusters,
                                           generate_masks, masks_to_boxes)

    if "chain" not in _BUILT:
        out = tmp_path_factory.mktemp("chain")
        paths = {"tiles": tile_store_path}
        paths["masks"] = generate_masks(tile_store_path, out / "masks.zarr", "classical", FAST_CLASSICAL,
                                        progress=False)
        paths["boxes"] = masks_to_boxes(paths["masks"], out / "boxes.zarr", progress=False)
        paths["embeddings"] = extract_embeddings(tile_store_path, paths["boxes"], out / "embeddings.zarr",
                                                 FAST_EMBEDDING, device="cpu", progress=False)
        paths["clusters"] = fit_clusters([paths["embeddings"]], out / "clusters.zarr", pca_dim=16, num_clusters=8)
        paths["pseudo_labels"] = assign_pseudo_labels(paths["embeddings"], paths["clusters"], out / "pseudo.zarr")
        _BUILT["chain"] = paths
    return dict(_BUILT["chain"])
