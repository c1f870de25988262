"""Detection dataset over a tile store (``mutdet_core.tiling.store.TileStore`` or anything with its API).

Tile store API used here: ``len(store)``; ``store.index`` (DataFrame with at least ``tile`` and
``image_id``); ``store.attrs`` (dict, ``classes``); ``store.read_pixels(i)`` -> (S, S, 3) uint8 RGB;
``store.read_objects(i)`` -> dict with ``polygons`` (n, 8) float32 tile coordinates, ``class_id`` (n,)
int, ``difficulty`` (n,) int. Optional extra entries are honoured: ``obbs`` (n, 5) le90 boxes used instead
of the polygons (pseudo-labels are born as boxes), and ``embeddings`` (n, D) per-object pseudo-label
embeddings for pre-training, kept aligned with the objects.

Objects as mmrotate's ``DOTADataset`` loads them: polygon -> minimum-area rectangle (``cv2.minAreaRect``
semantics, ``geometry.poly2obb_min_area``) -> le90; boxes with w < 2 or h < 2 px dropped (``poly2obb_np``
returns None for them); every class and difficulty is kept as ground truth. Tiles left without objects are
skipped when ``filter_empty`` (mmdet ``filter_empty_gt``, on for training).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from mutdet_core.engine.sampler import split_key
from mutdet_core.geometry import poly2obb_min_area, regularize_obb, valid_obb_mask


def objects_to_obbs(objects: dict, min_size: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """``(obbs (n, 5) float64 le90, keep (n,) bool)`` for one tile's objects (see the module docstring)."""
    if "obbs" in objects:
        obbs = regularize_obb(np.asarray(objects["obbs"], dtype=np.float64).reshape(-1, 5), "le90")
    else:
        polygons = np.asarray(objects["polygons"], dtype=np.float64).reshape(-1, 8)
        obbs = poly2obb_min_area(polygons, "le90") if len(polygons) else np.zeros((0, 5))
    return obbs, valid_obb_mask(obbs, min_size) if len(obbs) else np.zeros(0, dtype=bool)


class TileDetectionDataset(Dataset):
    """Samples of one tile store for training or evaluation.

    Args:
        store: an open tile store, or the path of one (opened with ``TileStore.open``).
        transforms: callable ``(sample, rng) -> sample`` (``transforms.build_transforms``); None: only
            ``Normalize``.
        image_ids: keep only tiles of these images (a data fraction, see ``fractions.select_fraction``).
        filter_empty: skip tiles without objects (after the size filter).
        min_size: boxes with w or h below this many pixels are dropped (mmrotate: 2).
        max_objects: keep at most this many objects per tile, in store order (MutDet pre-training keeps the
            first 1000 pseudo-boxes, i.e. the largest masks); None keeps all.

    Keys: an int, or the ``(index, sample_seed)`` pair of ``engine.SeededSampler`` (the seed drives the
    random augmentation; a plain int gets seed ``index``, so evaluation is deterministic too).

    Returns a sample dict (see ``transforms.py``) with ``image`` (3, H, W) float32 normalised, ``obbs``
    (n, 5) float64 pixels le90, ``labels`` (n,) int64, ``difficulty`` (n,) int64, optional ``embeddings``
    (n, D) float32, and ``tile``, ``store_index``, ``orig_size`` (S, S), ``scale_factor``, ``flip``.
    """

    def __init__(self, store, transforms: Callable | None = None, image_ids: Iterable[str] | None = None,
                 filter_empty: bool = True, min_size: float = 2.0, max_objects: int | None = None):
        if isinstance(store, (str, Path)):
            from mutdet_core.tiling.store import TileStore

            store = TileStore.open(store)
        self.store = store
        if transforms is None:
            from .transforms import Normalize

            transforms = Normalize()
        self.transforms = transforms
        self.max_objects = max_objects
        self.classes = list(store.attrs.get("classes", []))

        tiles = np.arange(len(store))
        if image_ids is not None:
            wanted = set(str(i) for i in image_ids)
            known = set(store.index["image_id"].astype(str))
            missing = sorted(wanted - known)
            if missing:
                raise ValueError(f"{getattr(store, 'path', 'tile store')}: {len(missing)} requested image ids are not "
                                 f"in the store, e.g. {missing[:5]}")
            tiles = tiles[store.index["image_id"].astype(str).isin(wanted).to_numpy()]
        # Boxes are converted once here (cheap, small) so filter_empty sees the post-filter counts.
        self._obbs, self._keep, self._labels, self._difficulty = {}, {}, {}, {}
        selected = []
        self.has_embeddings = False
        # valid objects (after the size filter) and how many of them max_objects cut, over selected tiles
        self.num_valid_objects, self.num_dropped_objects = 0, 0
        for i in tiles.tolist():
            objects = store.read_objects(i)
            self.has_embeddings |= "embeddings" in objects
            obbs, keep = objects_to_obbs(objects, min_size)
            keep_idx = np.flatnonzero(keep)
            valid = len(keep_idx)
            if max_objects is not None:
                keep_idx = keep_idx[:max_objects]
            if filter_empty and len(keep_idx) == 0:
                continue
            self._obbs[i] = obbs[keep_idx]
            self._keep[i] = keep_idx
            self._labels[i] = np.asarray(objects["class_id"], dtype=np.int64)[keep_idx]
            self._difficulty[i] = np.asarray(objects["difficulty"], dtype=np.int64)[keep_idx]
            selected.append(i)
            self.num_valid_objects += valid
            self.num_dropped_objects += valid - len(keep_idx)
        self.tile_indices = np.asarray(selected, dtype=np.int64)
        if self.classes and any(len(v) and v.max() >= len(self.classes) for v in self._labels.values()):
            raise ValueError(f"{getattr(store, 'path', 'tile store')}: class ids exceed the {len(self.classes)} "
                             "classes named in its attrs")

    def __len__(self) -> int:
        return len(self.tile_indices)

    @property
    def image_ids(self) -> list[str]:
        """Image id of each sample, in dataset order."""
        return self.store.index["image_id"].astype(str).to_numpy()[self.tile_indices].tolist()

    def __getitem__(self, key) -> dict:
        index, seed = split_key(key)
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        i = int(self.tile_indices[index])
        image = self.store.read_pixels(i)
        sample = {
            "image": image, "obbs": self._obbs[i].copy(), "labels": self._labels[i], "difficulty": self._difficulty[i],
            "tile": str(self.store.index["tile"].iloc[i]), "store_index": i, "orig_size": tuple(image.shape[:2]),
            "scale_factor": (1.0, 1.0), "flip": None,
        }
        if self.has_embeddings:  # not cached: 256 floats per object would not fit in memory for big stores
            sample["embeddings"] = np.asarray(self.store.read_objects(i)["embeddings"], dtype=np.float32)[self._keep[i]]
        rng = np.random.default_rng(seed if seed is not None else index)
        sample = self.transforms(sample, rng)
        if not isinstance(sample["image"], torch.Tensor):
            raise TypeError("the transforms must end with Normalize (which makes the (3, H, W) tensor)")
        return sample
