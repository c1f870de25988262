"""Export a tile store in mmrotate's split format, so our tiles can be handed to mmrotate / ARS-DETR.

``OUTDIR/images/<tile>.png`` and ``OUTDIR/annfiles/<tile>.txt`` with lines
``x1 y1 x2 y2 x3 y3 x4 y4 class difficult`` and no header, coordinates printed the way mmrotate's
``img_split.py`` prints its float32 arrays (``str(np.float32)``, e.g. ``1054.0``).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .store import TileStore


def annfile_lines(polygons: np.ndarray, class_names: list[str], difficulty: np.ndarray) -> list[str]:
    """mmrotate split-format lines for one tile."""
    return [
        " ".join(str(v) for v in np.asarray(poly, dtype=np.float32)) + f" {name} {int(diff)}"
        for poly, name, diff in zip(polygons, class_names, difficulty)
    ]


def export_tiles(store_path, out_dir, overwrite: bool = False, progress: bool | None = None) -> int:
    """Write every tile of the store as PNG + annfile. Returns the number of tiles written.

    An existing non-empty ``out_dir`` is an error unless ``overwrite``: exports are never silently mixed.
    """
    store = TileStore.open(store_path)
    out_dir = Path(out_dir)
    images, annfiles = out_dir / "images", out_dir / "annfiles"
    if not overwrite and out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; choose another folder or pass --overwrite")
    images.mkdir(parents=True, exist_ok=True)
    annfiles.mkdir(parents=True, exist_ok=True)
    classes = store.classes
    for i in tqdm(range(len(store)), desc="export", unit="tile", disable=None if progress is None else not progress):
        name = store.index.at[i, "tile"]
        rgb = store.read_pixels(i)
        if not cv2.imwrite(str(images / f"{name}.png"), np.ascontiguousarray(rgb[..., ::-1])):
            raise OSError(f"could not write {images / (name + '.png')}")
        obj = store.read_objects(i)
        lines = annfile_lines(obj["polygons"], [classes[c] for c in obj["class_id"]], obj["difficulty"])
        (annfiles / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
    return len(store)
