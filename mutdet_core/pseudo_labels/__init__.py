"""Pseudo-labels (SPEC 2.2-2.6): masks -> oriented boxes -> crop embeddings -> PCA + k-means classes.

One entry function per stage, each reading the previous stage's Zarr store and writing its own
(``artifact.py``: written to ``<out>.tmp``, renamed when complete, fingerprinted):

    generate_masks(tile_store, out, method, params, device)         masks.py      (SAM or classical)
    masks_to_boxes(masks, out, max_boxes)                           boxes.py
    ground_truth_boxes(tile_store, out, max_boxes)                  oracle.py     (diagnostic: labelled boxes)
    extract_embeddings(tile_store, boxes, out, params, device)      embeddings.py
    fit_clusters([embeddings, ...], out, pca_dim, num_clusters)     clustering.py
    assign_pseudo_labels(embeddings, clusters, out)                 clustering.py
    inspect_store(store, out_dir) / inspect_pseudo_labels(...)     inspection.py (pictures, statistics)
    export_pseudo_labels(pseudo_labels, out_dir)                    export.py     (DOTA txt + .npy)
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "StageError": ".artifact", "open_stage": ".artifact", "masks_to_boxes": ".boxes", "open_boxes": ".boxes",
    "assign_pseudo_labels": ".clustering", "fit_clusters": ".clustering", "open_clusters": ".clustering",
    "open_pseudo_labels": ".clustering", "EmbeddingParams": ".params", "extract_embeddings": ".embeddings",
    "open_embeddings": ".stores", "export_pseudo_labels": ".export",
    "GraphSegmentationParams": ".params", "inspect_pseudo_labels": ".inspection",
    "inspect_store": ".inspection", "generate_masks": ".masks", "open_masks": ".masks", "read_tile_masks": ".masks",
    "ground_truth_boxes": ".oracle", "CheckpointError": ".params", "SamParams": ".params",
}

__all__ = [
    "StageError", "CheckpointError", "open_stage", "generate_masks", "open_masks", "read_tile_masks",
    "masks_to_boxes", "ground_truth_boxes", "open_boxes", "extract_embeddings", "open_embeddings", "fit_clusters",
    "open_clusters", "assign_pseudo_labels", "open_pseudo_labels", "inspect_store", "inspect_pseudo_labels",
    "export_pseudo_labels", "GraphSegmentationParams", "SamParams", "EmbeddingParams",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
