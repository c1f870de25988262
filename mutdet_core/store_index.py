"""The tile index of a store (one row per tile) as Zarr arrays, and the legacy ``tiles.csv`` reader.

Format version 2 (tile and stage stores) keeps the index inside the Zarr hierarchy::

    index/                 group; attrs: description, columns (the column order)
        tile               (T,) string   tile name
        image_id           (T,) string   source image
        <column>           (T,) int64 / float64 / string, one per further column (x, y, size, rows, seconds...)

so a store holds nothing but Zarr nodes: listing it (``zarr.open_group(...).members()``, xarray) raises no
``ZarrUserWarning: Object at tiles.csv is not recognized``, and the manifest covers the index like any other
array. Version 1 stores kept the index in a ``tiles.csv`` file inside the store; they still open
(``read_legacy_index``), and a stage that is rerun rewrites them in the new layout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .store_manifest import check_index_rows
from .store_schema import creation_kwargs

GROUP = "index"
LEGACY_FILE = "tiles.csv"
READABLE_VERSIONS = (1, 2)  # 1: the tile index in a tiles.csv file inside the store
STRING_COLUMNS = ("tile", "image_id")


def _column_values(values) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind in "OUS":  # names: Zarr v3's variable-length UTF-8 string type
        return np.asarray([str(v) for v in array], dtype=object)
    if array.dtype.kind == "b":
        return array.astype(np.int8)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    return array.astype(np.float64)


def write_index(root, table: pd.DataFrame, format_name: str) -> None:
    """Write ``table`` (one row per tile, ``tile`` and ``image_id`` first) as ``index/<column>`` arrays of the
    open Zarr group ``root``."""
    group = root.require_group(GROUP)
    group.attrs.update({"description": "the tile index: one row per tile, in store order (row i of every "
                                       "index array is tile i)", "columns": [str(c) for c in table.columns]})
    n = len(table)
    for column in table.columns:
        values = _column_values(table[column].to_numpy())
        name = f"{GROUP}/{column}"
        dtype = str if values.dtype == object else values.dtype
        array = root.create_array(name, shape=(n,), chunks=(max(n, 1),), dtype=dtype,
                                  **creation_kwargs(format_name, name, 1))
        if n:
            array[...] = values


def has_index(root) -> bool:
    """Whether the open group ``root`` holds an ``index`` group (format version 2 and later)."""
    try:
        root[GROUP]
    except KeyError:
        return False
    return True


def read_index(root, path, error, rebuild: str) -> pd.DataFrame:
    """The ``index/*`` arrays of the open group ``root`` (the store at ``path``) as a DataFrame (strings as
    ``str``, in column order). Raises ``error`` (the store's own type) when a column is missing or the columns
    differ in length; ``rebuild`` says how to rebuild the store."""
    group = root[GROUP]
    data = {}
    for column in group.attrs.get("columns", []):
        try:
            values = np.asarray(group[column][...])
        except KeyError:
            raise error(f"{Path(path) / GROUP}: column {column} is missing; the store is damaged: {rebuild}") from None
        if values.dtype.kind in "OUST":
            values = np.asarray([str(v) for v in values], dtype=object)
        data[column] = values
    lengths = {column: len(values) for column, values in data.items()}
    if len(set(lengths.values())) > 1:
        raise error(f"{Path(path) / GROUP}: columns of different lengths {lengths}; the store is damaged: {rebuild}")
    return pd.DataFrame(data)


def read_legacy_index(path) -> pd.DataFrame:
    """The ``tiles.csv`` of a version 1 store."""
    return pd.read_csv(Path(path) / LEGACY_FILE, dtype={"tile": str, "image_id": str}, keep_default_na=False)


def check_version(path, root, attrs: dict, error, rebuild: str, rerun: str) -> bool:
    """The checks every store opener makes before it trusts a store's layout: a format version this code
    reads, ``complete`` set and the tile index written. Returns whether the store is a version 1 store
    (``tiles.csv``); raises ``error`` (the store's own type) otherwise, saying how to ``rebuild`` it or what
    to ``rerun``."""
    version = attrs.get("format_version")
    if version not in READABLE_VERSIONS:
        raise error(f"{path}: format version {version}, this code reads {READABLE_VERSIONS}; {rebuild}")
    legacy = version == 1
    if not attrs.get("complete") or not ((Path(path) / LEGACY_FILE).is_file() if legacy else has_index(root)):
        raise error(f"{path}: the store was not finished; delete it and {rerun}")
    return legacy


def load_index(path, root, legacy: bool, attrs: dict, error, rebuild: str) -> pd.DataFrame:
    """The tile index of an opened store (``check_version`` said which layout), its row count checked
    against ``attrs["num_tiles"]``."""
    index = read_legacy_index(path) if legacy else read_index(root, path, error, rebuild)
    check_index_rows(path, LEGACY_FILE if legacy else GROUP, len(index), attrs, error, rebuild)
    return index
