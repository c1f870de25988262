"""``mutdet info STORE``: what a tile or stage store holds, from the store alone.

Works on every store kind (tiles, masks, boxes, embeddings, clusters, pseudo-labels): the store is opened
with its own opener (so a damaged or unfinished store is reported as such), then every array is listed
from its ``zarr.json`` with shape, dtype, dimension names and its description, columns and units
(``mutdet_core.store_schema``). The arrays are found by walking the folder for ``zarr.json`` files, not
by Zarr's group listing, so a file Snakemake keeps beside them (``.snakemake_timestamp``) raises no warning.
"""
from __future__ import annotations

import json
from pathlib import Path

from .store_manifest import _array_folders, is_finished, store_folder
from .swap import recover_swap

SUMMARY_KEYS = ("dataset", "split", "classes", "sizes", "gaps", "rates", "num_tiles", "num_rows", "num_objects",
                "num_clusters", "feature_dim", "pca_dim", "fingerprint", "tile_fingerprint", "params")


def _dtype(meta: dict) -> str:
    data_type = meta.get("data_type")
    return data_type if isinstance(data_type, str) else json.dumps(data_type)


def store_info(path) -> dict:
    """``{"path", "format", "format_version", <summary attrs>, "arrays": {name: {shape, dtype, dimension_names,
    description, columns?, units?, ...}}}`` of the finished store at ``path``.

    Raises:
        TileStoreError / StageError: no store here, unfinished, damaged or of an unknown format.
    """
    from .pseudo_labels.artifact import StageError, open_stage
    from .tiling.store import FORMAT as TILES_FORMAT, TileStore

    path = store_folder(path)
    recover_swap(path, is_finished)
    meta_path = path / "zarr.json"
    if not meta_path.is_file():
        raise StageError(f"{path}: no Zarr store here (check the path)")
    attrs = json.loads(meta_path.read_text()).get("attributes", {})
    fmt = attrs.get("format")
    if fmt == TILES_FORMAT:
        store = TileStore.open(path)
        summary = store.summary()
    elif isinstance(fmt, str) and fmt.startswith("mutdet-"):
        store = open_stage(path, fmt)
        summary = {"tiles": len(store), "rows": store.num_rows}
    else:
        raise StageError(f"{path}: format {fmt!r} is not a mutdet store")
    info = {"path": str(path), "format": fmt, "format_version": attrs.get("format_version"),
            "description": attrs.get("description", ""), **summary}
    counted = {"num_tiles": "tiles", "num_rows": "rows", "num_objects": "objects"}  # already in the summary
    info.update({k: attrs[k] for k in SUMMARY_KEYS if k in attrs and k not in info and counted.get(k) not in info})
    if attrs.get("format_version", 1) < 2:
        info["note"] = ("format version 1: the tile index is a tiles.csv file and the arrays carry no "
                        "descriptions; rerun the stage to rewrite the store in the current layout")
    arrays = {}
    for name, folder in _array_folders(path).items():
        meta = json.loads((folder / "zarr.json").read_text())
        arrays[name] = {"shape": meta["shape"], "dtype": _dtype(meta),
                        "dimension_names": meta.get("dimension_names"), **meta.get("attributes", {})}
    info["arrays"] = arrays
    return info


def _units(entry: dict) -> str:
    units, columns = entry.get("units"), entry.get("columns")
    if columns and isinstance(units, list):
        return "columns: " + ", ".join(f"{c} [{u}]" for c, u in zip(columns, units))
    if columns:
        return "columns: " + ", ".join(columns) + (f" [{units}]" if units else "")
    return f"units: {units}" if units else ""


def format_info(info: dict) -> str:
    """Human-readable text of ``store_info``: a header, then one block per array."""
    lines = [f"{info['path']}: {info['format']} store, format version {info['format_version']}"]
    for key, value in info.items():
        if key in ("path", "format", "format_version", "arrays") or value in ("", None):
            continue
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        lines.append(f"  {key}: {text if len(text) <= 200 else text[:197] + '...'}")
    lines.append("arrays:")
    for name, entry in info["arrays"].items():
        dims = entry.get("dimension_names") or []
        shape = ", ".join(f"{d}={s}" if d else str(s) for d, s in zip(dims or [None] * len(entry["shape"]),
                                                                        entry["shape"]))
        lines.append(f"  {name}  ({shape})  {entry['dtype']}")
        lines.append(f"      {entry.get('description', '(no description)')}")
        units = _units(entry)
        if units:
            lines.append(f"      {units}")
        extra = {k: v for k, v in entry.items()
                 if k not in ("shape", "dtype", "dimension_names", "description", "columns", "units")}
        for key, value in extra.items():
            lines.append(f"      {key}: {json.dumps(value)}")
    return "\n".join(lines)
