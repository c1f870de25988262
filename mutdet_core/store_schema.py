"""What every array of every stage store holds: description, dimension names, column names and units.

The writers (``tiling/store.py``, ``pseudo_labels/artifact.py``) look each array up here when they create it,
and write the entry into the array's own ``zarr.json``: ``attributes`` gets ``description`` (and, where they
apply, ``columns``: names along the last axis, ``units``: one per column or one for all, ``angle_version``),
and the Zarr v3 ``dimension_names`` field gets ``dims``. So a store explains itself to anyone with a Zarr
reader (``mutdet info STORE`` prints it), without this code.

Conventions shared by every store:

* Coordinates are tile pixels: x to the right, y down, pixel centres on integers (as OpenCV contours).
* Rotated boxes are le90 (mmrotate): ``cx, cy, w, h`` in px, ``theta`` in radians, ``w >= h``,
  ``theta`` in ``[-pi/2, pi/2)``; the w side runs along ``(cos theta, sin theta)``.
* Rows of a stage store are grouped by tile: rows of tile ``i`` are ``tile_offsets[i]:tile_offsets[i+1]``
  in every array whose first dimension is the row dimension (``mask`` or ``box``).
* ``index/<column>``: one row per tile (the tile index, formerly a ``tiles.csv`` file inside the store);
  the ``index`` group's ``columns`` attribute gives the column order.

This module imports nothing heavy: ``mutdet info`` and the light jobs read it.
"""
from __future__ import annotations

UNDOCUMENTED = "not documented (add it to mutdet_core/store_schema.py)"

_XY8 = ["x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"]
_OFFSETS = {"description": "row boundaries per tile: the rows of tile i are tile_offsets[i]:tile_offsets[i+1] "
                           "of every row array (length tiles + 1)", "dims": ["tile_boundary"], "units": "row"}

# The tile index: one row per tile, in store order. Every store has ``tile`` and ``image_id``.
INDEX = {
    "tile": {"description": "tile name: <image_id>__<size>__<x>___<y> (mmrotate img_split naming)"},
    "image_id": {"description": "the source image the tile was cut from"},
    "x": {"description": "left edge of the tile window in the source image", "units": "px"},
    "y": {"description": "top edge of the tile window in the source image", "units": "px"},
    "size": {"description": "side of the tile window; its pixels are in pixels/<size>", "units": "px"},
    "num_objects": {"description": "labelled objects kept in the tile (rows of objects/*)", "units": "object"},
    "pixel_row": {"description": "row of this tile in pixels/<size>"},
    "rows": {"description": "rows of this tile in the row arrays of the store", "units": "row"},
    "seconds": {"description": "wall-clock time the proposal method took on this tile", "units": "s"},
}

# What a store of each format is (the group attribute ``description``).
STORES = {
    "mutdet-tiles": "tiles of one dataset split (mmrotate img_split windows): RGB pixels and the labelled objects "
                    "in tile coordinates",
    "mutdet-masks": "class-agnostic object mask proposals of every tile (attrs params.method: sam or classical)",
    "mutdet-boxes": "one oriented box (le90) per mask, largest mask first, at most params.max_boxes per tile",
    "mutdet-embeddings": "a frozen ImageNet network's embedding of every box's rotated crop, rows aligned with the "
                         "boxes store",
    "mutdet-clusters": "PCA and spherical k-means fitted on the embeddings of a pre-training set; not grouped by "
                       "tile",
    "mutdet-pseudo-labels": "pseudo-class (nearest k-means centroid) and PCA embedding of every box, rows aligned "
                            "with the boxes store",
}

ARRAYS: dict[str, dict[str, dict]] = {
    "mutdet-tiles": {
        "pixels/*": {"description": "tile pixels, RGB (padded with the tiler's fill colour where the window "
                                    "passes the image border); one tile per chunk",
                     "dims": ["pixel_row", "y", "x", "channel"], "columns": ["R", "G", "B"], "units": "uint8"},
        "objects/polygons": {"description": "labelled object polygons in tile coordinates (translated, not "
                                            "clipped at the tile border)",
                             "dims": ["object", "polygon_coord"], "columns": _XY8, "units": "px"},
        "objects/class_id": {"description": "class of each object: index into the group attribute 'classes'",
                             "dims": ["object"]},
        "objects/difficulty": {"description": "0 / 1 as labelled (1 = difficult), 2 = truncated by the tile "
                                              "border", "dims": ["object"]},
        "objects/tile_offsets": {**_OFFSETS, "description": "object boundaries per tile: the objects of tile i "
                                                            "are rows tile_offsets[i]:tile_offsets[i+1] of "
                                                            "objects/* (length tiles + 1)", "units": "object"},
    },
    "mutdet-masks": {
        "bbox": {"description": "axis-aligned box of the mask's pixels (the crop stored in bits)",
                 "dims": ["mask", "xywh"], "columns": ["x", "y", "w", "h"], "units": "px"},
        "area": {"description": "mask pixels", "dims": ["mask"], "units": "px"},
        "predicted_iou": {"description": "SAM's predicted IoU of the mask; NaN for the methods that do not "
                                         "produce it (see produced_by, and not_produced in this store)",
                          "dims": ["mask"], "produced_by": ["sam"]},
        "stability_score": {"description": "SAM's stability score / the classical segmentation's scale stability "
                                           "(fraction of scales at which the region persists); NaN for the methods "
                                           "that do not produce it (see produced_by, and not_produced in this store)",
                            "dims": ["mask"], "produced_by": ["sam", "classical"]},
        "score": {"description": "the method's ranking score (SAM: predicted IoU; classical and regions: objectness; "
                                 "selective_search: falls with OpenCV's rank)",
                  "dims": ["mask"]},
        "point": {"description": "SAM's prompt point of the mask; NaN for the methods that do not produce it "
                                 "(see produced_by, and not_produced in this store)",
                  "dims": ["mask", "xy"], "columns": ["x", "y"], "units": "px", "produced_by": ["sam"]},
        "bits_offset": {"description": "first byte of the mask in bits", "dims": ["mask"], "units": "byte"},
        "bits": {"description": "each mask cropped to its bbox, row-major, np.packbits: ceil(w*h/8) bytes per "
                                "mask, starting at bits_offset", "dims": ["mask_byte"]},
    },
    "mutdet-boxes": {
        "rbox": {"description": "oriented box, le90: w >= h, theta in [-pi/2, pi/2), the w side along "
                                "(cos theta, sin theta)", "dims": ["box", "rbox_param"],
                 "columns": ["cx", "cy", "w", "h", "theta"], "units": ["px", "px", "px", "px", "rad"],
                 "angle_version": "le90"},
        "polygon": {"description": "the box's four corners (cv2.boxPoints order)", "dims": ["box", "polygon_coord"],
                    "columns": _XY8, "units": "px"},
        "mask_area": {"description": "pixels of the mask the box came from (oracle boxes: the labelled "
                                     "polygon's area)", "dims": ["box"], "units": "px"},
        "mask_index": {"description": "row of the mask in the masks store (attrs inputs.masks); -1 for oracle "
                                      "boxes (no mask)", "dims": ["box"]},
        "score": {"description": "the mask's score (SAM predicted IoU / classical objectness; 1 for oracle boxes)",
                  "dims": ["box"]},
    },
    "mutdet-embeddings": {
        "features": {"description": "frozen ImageNet network's embedding of the box's rotated crop (enlarged "
                                    "x1.5), average-pooled, not normalised; rows align with the boxes store",
                     "dims": ["box", "feature"]},
    },
    "mutdet-clusters": {
        "pca_components": {"description": "PCA axes (rows, by decreasing variance): embedding = "
                                          "normalise((features - pca_mean) @ pca_components.T)",
                           "dims": ["component", "feature"]},
        "pca_mean": {"description": "mean of the fitted features", "dims": ["feature"]},
        "explained_variance": {"description": "variance along each PCA axis", "dims": ["component"]},
        "centroids": {"description": "spherical k-means centroids (L2-normalised); row k is pseudo-class k, "
                                     "named cluster_k", "dims": ["cluster", "component"]},
        "fit_cluster_sizes": {"description": "fitting boxes assigned to each centroid", "dims": ["cluster"],
                              "units": "box"},
    },
    "mutdet-pseudo-labels": {
        "embedding": {"description": "PCA-projected, L2-normalised embedding of the box; rows align with the "
                                     "boxes store", "dims": ["box", "component"]},
        "pseudo_class": {"description": "nearest centroid by cosine, 0..K-1: row of centroids in the clusters "
                                        "store; its name is attrs classes[pseudo_class] = cluster_<pseudo_class>",
                         "dims": ["box"]},
        "similarity": {"description": "cosine similarity of the embedding to its centroid", "dims": ["box"]},
    },
}


def cluster_name(k: int) -> str:
    """Name of pseudo-class ``k`` (0-based, the value stored in ``pseudo_class``): ``cluster_<k>``."""
    return f"cluster_{int(k)}"


def array_spec(format_name: str, name: str) -> dict:
    """The entry of array ``name`` (path inside the store) of a store of ``format_name``.

    ``tile_offsets`` and ``index/<column>`` are shared by every stage store; ``pixels/<size>`` matches
    ``pixels/*``. An array with no entry gets ``UNDOCUMENTED`` as its description (the store tests fail on it).
    """
    if name.startswith("index/"):
        column = name.split("/", 1)[1]
        entry = INDEX.get(column, {"description": UNDOCUMENTED})
        return {**entry, "dims": ["tile"]}
    specs = ARRAYS.get(format_name, {})
    if name in specs:
        return dict(specs[name])
    if name.startswith("pixels/") and "pixels/*" in specs:
        return dict(specs["pixels/*"])
    if name == "tile_offsets":
        return dict(_OFFSETS)
    return {"description": UNDOCUMENTED}


def creation_kwargs(format_name: str, name: str, ndim: int, method: str | None = None) -> dict:
    """``dimension_names`` and ``attributes`` for ``zarr.Group.create_array`` of array ``name``.

    ``method``: the store's proposal method (``attrs["params"]["method"]``); an array only some methods fill
    (``produced_by``) gets ``not_produced`` saying that this store's values are all NaN."""
    spec = array_spec(format_name, name)
    if method is not None and "produced_by" in spec and method not in spec["produced_by"]:
        spec["not_produced"] = f"all NaN: method {method!r} does not produce {name}"
    dims = spec.pop("dims", None)
    if dims is None or len(dims) != ndim:  # an undocumented array: generic names, still one per axis
        dims = [f"dim_{i}" for i in range(ndim)]
    return {"dimension_names": tuple(dims), "attributes": spec}
