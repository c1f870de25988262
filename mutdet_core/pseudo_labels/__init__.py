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
from .artifact import StageError, open_stage
from .boxes import masks_to_boxes, open_boxes
from .clustering import assign_pseudo_labels, fit_clusters, open_clusters, open_pseudo_labels
from .embeddings import EmbeddingParams, extract_embeddings, open_embeddings
from .export import export_pseudo_labels
from .graph_segmentation import GraphSegmentationParams
from .inspection import inspect_pseudo_labels, inspect_store
from .masks import generate_masks, open_masks, read_tile_masks
from .oracle import ground_truth_boxes
from .sam import CheckpointError, SamParams

__all__ = [
    "StageError", "CheckpointError", "open_stage", "generate_masks", "open_masks", "read_tile_masks",
    "masks_to_boxes", "ground_truth_boxes", "open_boxes", "extract_embeddings", "open_embeddings", "fit_clusters",
    "open_clusters", "assign_pseudo_labels", "open_pseudo_labels", "inspect_store", "inspect_pseudo_labels",
    "export_pseudo_labels", "GraphSegmentationParams", "SamParams", "EmbeddingParams",
]
