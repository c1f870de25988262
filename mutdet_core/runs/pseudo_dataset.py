"""The pre-training set: tiles of one or more tile stores with their pseudo-labels (SPEC 2.7).

``PseudoLabelledTiles`` presents (tile store, pseudo-labels store) pairs through the tile-store API that
``mutdet_core.data.TileDetectionDataset`` reads, so pre-training reuses the fine-tuning data pipeline
(resize, flips, padding collate) unchanged:

    ``read_pixels(i)``   the tile's RGB pixels, from its tile store
    ``read_objects(i)``  ``obbs`` (n, 5) le90 tile pixels (the pseudo-boxes, from the boxes store the
                         pseudo-labels were built on), ``class_id`` (n,) the pseudo-class (k-means cluster),
                         ``difficulty`` (n,) zeros, ``embeddings`` (n, P) the PCA embeddings, read lazily
    ``index``            the tile stores' indexes, concatenated; ``attrs["classes"]`` ``cluster_0..K-1``
                         (``cluster_k`` is pseudo-class ``k``)

Rows keep the boxes store's order (largest mask first), so ``max_objects`` keeps the largest pseudo-boxes,
as the released ``max_gt_num`` did. Every pairing is checked before any tile is read: the pseudo-labels
must be built on that tile store and fitted with the given clusters store.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..data import build_detection_dataset
from ..pseudo_labels.artifact import StageError, check_input
from ..pseudo_labels.clustering import open_clusters, open_pseudo_labels
from ..pseudo_labels.inspection import linked_boxes_store
from ..store_schema import cluster_name
from ..tiling.store import TileStore

log = logging.getLogger(__name__)


class LazyRows:
    """Rows ``rows`` of a Zarr array, read only when converted with ``np.asarray``.

    ``TileDetectionDataset`` lists every tile's objects once when it is built; reading each tile's
    (n, 256) embeddings there would decompress the whole embedding array only to learn that the key exists.
    """

    def __init__(self, array, rows: slice, width: int):
        self.array, self.rows, self.width = array, rows, width

    def __len__(self) -> int:
        return self.rows.stop - self.rows.start

    def __array__(self, dtype=None, copy=None):
        values = np.asarray(self.array[self.rows]) if len(self) else np.zeros((0, self.width), np.float32)
        return values.astype(dtype, copy=False) if dtype is not None else values


class PseudoLabelledTiles:
    """Tiles + pseudo-labels of several stores as one tile-store-like object (module docstring).

    Args:
        tile_stores: paths (or open ``TileStore``s) of the pre-training tile stores.
        pseudo_label_stores: the ``mutdet-pseudo-labels`` store of each tile store, same order.
        clusters_store: the ``mutdet-clusters`` store every pseudo-labels store was assigned with.
    Raises:
        ValueError / StageError naming the store when the lists differ in length or a pairing is wrong.
    """

    def __init__(self, tile_stores, pseudo_label_stores, clusters_store):
        tile_stores, pseudo_label_stores = list(tile_stores), list(pseudo_label_stores)
        if not tile_stores:
            raise ValueError("pre-training needs at least one tile store")
        if len(tile_stores) != len(pseudo_label_stores):
            raise ValueError(f"{len(tile_stores)} tile stores but {len(pseudo_label_stores)} pseudo-labels stores; "
                             f"give one pseudo-labels store per tile store, in the same order")
        clusters = open_clusters(clusters_store)
        self.num_classes = int(clusters.attrs["num_clusters"])
        self.embedding_dim = int(clusters.attrs["pca_dim"])
        self.clusters_fingerprint = clusters.fingerprint
        self.parts = []
        for tiles_path, labels_path in zip(tile_stores, pseudo_label_stores):
            tiles = tiles_path if isinstance(tiles_path, TileStore) else TileStore.open(tiles_path)
            labels = open_pseudo_labels(labels_path)
            check_input(labels, "tiles", tiles, f"the pseudo-label stages on {tiles.path}")
            used = labels.attrs["inputs"]["clusters"]["fingerprint"]
            if used != clusters.fingerprint:
                raise StageError(f"{labels.path} was assigned with clusters of fingerprint {used}, not with "
                                 f"{clusters.path} (fingerprint {clusters.fingerprint}); rerun pseudo_assign")
            if labels.index["tile"].tolist() != tiles.index["tile"].tolist():
                raise StageError(f"{labels.path}: its tiles are not those of {tiles.path} (same fingerprint, other "
                                 f"index?); rerun the pseudo-label stages")
            boxes = linked_boxes_store(labels)
            self.parts.append({"tiles": tiles, "labels": labels, "rbox": boxes.read_all("rbox"),
                               "pseudo_class": labels.read_all("pseudo_class").astype(np.int64)})
        sizes = [len(p["tiles"]) for p in self.parts]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.index = pd.concat([p["tiles"].index[["tile", "image_id"]] for p in self.parts], ignore_index=True)
        self.attrs = {"classes": [cluster_name(k) for k in range(self.num_classes)]}
        self.path = ", ".join(str(p["tiles"].path) for p in self.parts)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, i: int) -> tuple[dict, int]:
        part = int(np.searchsorted(self._starts, i, side="right") - 1)
        return self.parts[part], int(i - self._starts[part])

    def read_pixels(self, i: int) -> np.ndarray:
        part, local = self._locate(i)
        return part["tiles"].read_pixels(local)

    def read_objects(self, i: int) -> dict:
        part, local = self._locate(i)
        rows = part["labels"].rows(local)
        n = rows.stop - rows.start
        return {"obbs": part["rbox"][rows], "class_id": part["pseudo_class"][rows],
                "difficulty": np.zeros(n, np.int8),
                "embeddings": LazyRows(part["labels"].root["embedding"], rows, self.embedding_dim)}

    def summary(self) -> dict:
        return {"tile_stores": [str(p["tiles"].path) for p in self.parts],
                "pseudo_label_stores": [str(p["labels"].path) for p in self.parts],
                "tiles": len(self), "boxes": int(sum(p["labels"].num_rows for p in self.parts)),
                "num_classes": self.num_classes, "embedding_dim": self.embedding_dim}

    def fingerprints(self) -> dict:
        """Input fingerprints for the run identity: every tile and pseudo-labels store, and the clusters."""
        out = {"clusters": self.clusters_fingerprint}
        for k, part in enumerate(self.parts):
            out[f"tiles_{k}"] = str(part["tiles"].attrs.get("fingerprint"))
            out[f"pseudo_labels_{k}"] = part["labels"].fingerprint
        return out


def build_pretraining_dataset(tiles: PseudoLabelledTiles, data_cfg):
    """The training dataset over ``tiles``: ``data_cfg`` (a ``settings.DataConfig``) resize, flips and
    ``max_objects``; tiles without any pseudo-box are skipped (they carry no target)."""
    dataset = build_detection_dataset(tiles, train=True, resize=data_cfg.resize, flip_ratios=data_cfg.flip_ratios,
                                      max_objects=data_cfg.max_objects)
    if len(dataset) == 0:
        raise ValueError(f"pre-training set {tiles.path}: no tile has a pseudo-box of at least 2 px; check the "
                         f"pseudo-label stages")
    if dataset.num_dropped_objects:
        # max_objects keeps the largest boxes: on proposals ranked by objectness (regions, classical) this
        # silently drops the small objects, so say how many targets the pseudo-label statistics overstate.
        log.warning("max_objects %d drops %d of %d pseudo-boxes (%.0f %%), the smallest of each tile with more; "
                    "the pseudo-label inspection counts them all (lower the proposal count, e.g. "
                    "masks.<method>.max_masks, to train on every box)", data_cfg.max_objects,
                    dataset.num_dropped_objects, dataset.num_valid_objects,
                    100.0 * dataset.num_dropped_objects / dataset.num_valid_objects)
    return dataset
