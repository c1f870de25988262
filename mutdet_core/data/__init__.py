"""Detection data pipeline: tile-store dataset, mmrotate-style augmentation, padding collate, data fractions."""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "Batch": ".collate", "collate_detection": ".collate", "padded_size": ".collate",
    "targets_to_pixel_obbs": ".collate", "TileDetectionDataset": ".dataset", "objects_to_obbs": ".dataset",
    "read_id_list": ".fractions", "select_fraction": ".fractions", "write_id_list": ".fractions",
    "IMAGENET_MEAN": ".transforms", "IMAGENET_STD": ".transforms", "Compose": ".transforms",
    "Normalize": ".transforms", "RRandomFlip": ".transforms", "RResize": ".transforms",
    "build_transforms": ".transforms", "flip_obbs": ".transforms", "resize_obbs": ".transforms",
}


def build_detection_dataset(store, train: bool = True, resize=800, flip_ratios=(0.25, 0.25, 0.25),
                            image_ids=None, max_objects=None, filter_empty=None) -> TileDetectionDataset:
    """The reference dataset for one tile store.

    Args:
        store: TileStore or its path.
        train: flips on and empty tiles skipped (evaluation: no flip, every tile kept).
        resize: keep-ratio resize target (800 for fine-tuning, 1024 for pre-training; None keeps the tile size).
        flip_ratios: probabilities of the horizontal, vertical and diagonal flips.
        image_ids: restrict to these images (a data fraction).
        max_objects: at most this many objects per tile (pre-training: 1000).
        filter_empty: default ``train``.
    """
    from .dataset import TileDetectionDataset
    from .transforms import build_transforms

    transforms = build_transforms(train=train, resize=resize, flip_ratios=flip_ratios)
    return TileDetectionDataset(store, transforms, image_ids=image_ids, max_objects=max_objects,
                                filter_empty=train if filter_empty is None else filter_empty)


__all__ = [
    "Batch", "Compose", "IMAGENET_MEAN", "IMAGENET_STD", "Normalize", "RRandomFlip", "RResize",
    "TileDetectionDataset", "build_detection_dataset", "build_transforms", "collate_detection", "flip_obbs",
    "objects_to_obbs", "padded_size", "read_id_list", "resize_obbs", "select_fraction", "targets_to_pixel_obbs",
    "write_id_list",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
