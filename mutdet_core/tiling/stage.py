"""The tiling stage as one call: a configured dataset split -> a tile store (rule ``tile``, ``mutdet tile``)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..datasets.splits import load_split, resolve_classes
from .tiler import tile_split
from .params import tiling_params

log = logging.getLogger(__name__)


def tile_dataset_split(entry: dict, name: str, split: str, out_path, results_dir="results",
                       threads: int = 1, overwrite: bool = False, root=None) -> Path:
    """Read split ``split`` of dataset ``name`` (its config ``entry``) and write its tile store.
    ``root``: the dataset root when it is not the configured one (generated synthetic data)."""
    records = load_split(entry, name, split, results_dir, root=root)
    if not records:
        raise ValueError(f"dataset {name!r} split {split!r}: no images found")
    log.info("dataset %s split %s: %d images, %d objects", name, split, len(records), sum(len(r) for r in records))
    return tile_split(records, out_path, tiling_params(entry.get("tiling", {})), resolve_classes(entry.get("classes")),
                      dataset=name, split=split, threads=threads, overwrite=overwrite)
