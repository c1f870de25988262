"""Stage artifacts of the pseudo-label chain: one Zarr group per stage, rows grouped by tile.

Every stage (masks, boxes, embeddings, pseudo-labels) writes the same kind of store::

    <name>.zarr/
        zarr.json          attrs: format, format_version, fingerprint, params, inputs, complete (last)
        tile_offsets       (T + 1,) int64: rows of tile i are offsets[i]:offsets[i+1] in every row array
        <row arrays>       (N, ...) one row per mask / box, in tile order
        <other arrays>     whole arrays (e.g. ``bits`` for masks, the PCA matrix for clusters)
        index/<column>     (T,) the tile index: tile, image_id, rows (+ per-tile columns of the stage),
                           see ``mutdet_core.store_index``

Every array carries a description, column names and units where they apply, and Zarr v3 dimension names
(``mutdet_core.store_schema``, looked up by format and array name; ``mutdet info STORE`` prints them), and
nothing but Zarr nodes lives in the folder. Version 1 stores (the index in a ``tiles.csv`` file inside the
store) still open; running the stage again rewrites them in the current layout.

It is written under ``<name>.tmp`` and swapped into place by ``finish()`` (``mutdet_core.swap``: the old
store waits in ``<name>.old`` until the new one is in), so a job killed half-way leaves nothing that
``open_stage`` (or a rerun) takes for finished and never loses the old store; a rerun deletes an unfinished
``.tmp``. ``attrs["manifest"]`` records every array's shape and chunk-file count; ``open_stage`` checks
them (``mutdet_core.store_manifest``), ``mutdet verify`` decodes all.

``fingerprint`` is a hash of the stage's format, its parameters and the fingerprints of its inputs, so a
store built from another tile store or with other parameters is noticed (``check_input``) instead of
being silently combined with newer artifacts.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from ..store_index import check_version, load_index, write_index
from ..store_manifest import MANIFEST_KEY, build_manifest, check_manifest, is_finished, store_folder
from ..store_schema import STORES, creation_kwargs
from ..swap import recover_swap, swap_in, temporary_path

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
CHUNK_BYTES = 4 << 20  # ~4 MiB chunks: large enough for Blosc, small enough to read one tile's rows cheaply


class StageError(RuntimeError):
    """A stage store that is missing, unfinished, of another format, or built from other inputs."""


def stage_fingerprint(format_name: str, params: dict, inputs: dict[str, str]) -> str:
    """16 hex digits identifying a stage output: its format, parameters and input fingerprints."""
    text = json.dumps({"format": format_name, "params": params, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


REBUILD = "rebuild it (rerun the rule that writes it, or the stage with overwrite)"


def _compressor():
    return zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


def existing_output(path, fingerprint: str, format_name: str, overwrite: bool = False) -> Path | None:
    """What to do with an existing output before a stage runs.

    Returns the path when a finished store with the same fingerprint is there (nothing to do), ``None``
    when the stage has to run (no store, an unfinished ``.tmp`` only, or ``overwrite``). A finished store
    with another fingerprint is an error unless ``overwrite``: results of two configurations never mix.
    """
    path = store_folder(path)
    recover_swap(path, is_finished)
    if not path.exists():
        return None
    try:
        store = open_stage(path, format_name)
    except StageError:
        if overwrite:
            return None
        raise
    if store.attrs.get("fingerprint") == fingerprint and store.attrs.get("format_version") == FORMAT_VERSION:
        log.info("%s is up to date (fingerprint %s): nothing to do", path, fingerprint)
        return path
    if store.attrs.get("fingerprint") == fingerprint:  # same results, older layout: rewritten in the current one
        log.info("%s: format version %s, rewriting it as version %d", path, store.attrs.get("format_version"),
                 FORMAT_VERSION)
        return None
    if overwrite:
        return None
    raise StageError(
        f"{path} was built from other inputs or parameters (fingerprint {store.attrs.get('fingerprint')}, "
        f"this run would write {fingerprint}); delete it or pass overwrite=True to rebuild it"
    )


class StageWriter:
    """Writes a stage store tile by tile; use as a context manager (an exception removes the ``.tmp``).

    Args:
        path: final ``.zarr`` path (an existing one is replaced only by ``finish()``).
        format_name: e.g. ``"mutdet-masks"``.
        tiles: DataFrame with at least ``tile`` and ``image_id``, one row per tile, in store order.
        row_arrays: ``{name: (trailing_shape, dtype)}`` of the per-row arrays.
        flat_arrays: ``{name: dtype}`` of 1-d arrays appended freely (e.g. mask bits).
        attrs: ``params``, ``inputs`` (``{name: {"path", "fingerprint"}}``), ``fingerprint`` and anything else.
    """

    def __init__(self, path, format_name: str, tiles: pd.DataFrame, row_arrays: dict, attrs: dict,
                 flat_arrays: dict | None = None):
        self.path = store_folder(path)
        recover_swap(self.path, is_finished)  # a swap cut short by a kill is finished before the .tmp is reused
        self.tmp = temporary_path(self.path)
        if self.tmp.exists():  # left by a killed run: never trusted, always rebuilt
            shutil.rmtree(self.tmp)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.root = zarr.open_group(str(self.tmp), mode="w", zarr_format=3)
        self.root.attrs.update({"description": STORES.get(format_name, format_name), **attrs, "format": format_name,
                                "format_version": FORMAT_VERSION, "complete": False})
        self.format_name = format_name
        params = attrs.get("params")
        self.method = params.get("method") if isinstance(params, dict) else None  # for arrays it leaves NaN
        self.tiles = tiles[["tile", "image_id"]].reset_index(drop=True).copy()
        self.counts = np.zeros(len(self.tiles), dtype=np.int64)
        self.tile_columns: dict[str, list] = {}
        self.next_tile = 0
        self._buffers: dict[str, list[np.ndarray]] = {}
        self._chunk_rows: dict[str, int] = {}
        for name, (trailing, dtype) in row_arrays.items():
            self._create(name, tuple(trailing), dtype)
        for name, dtype in (flat_arrays or {}).items():
            self._create(name, (), dtype)
        self.row_names = list(row_arrays)
        self.flat_names = list(flat_arrays or {})

    def _create(self, name, trailing: tuple, dtype) -> None:
        row_bytes = int(np.prod(trailing, dtype=np.int64)) * np.dtype(dtype).itemsize
        rows = max(1, CHUNK_BYTES // max(row_bytes, 1))
        self.root.create_array(name, shape=(0, *trailing), chunks=(rows, *trailing), dtype=dtype,
                               compressors=[_compressor()], fill_value=0,
                               **creation_kwargs(self.format_name, name, 1 + len(trailing), self.method))
        self._buffers[name] = []
        self._chunk_rows[name] = rows

    def _append(self, name: str, values: np.ndarray, final: bool = False) -> None:
        buffer = self._buffers[name]
        if len(values):
            buffer.append(values)
        buffered = sum(len(v) for v in buffer)
        rows = self._chunk_rows[name]
        full = buffered if final else (buffered // rows) * rows
        if full == 0:
            return
        data = np.concatenate(buffer) if len(buffer) > 1 else buffer[0]
        # Appending whole chunks keeps every chunk written once (no read-modify-write of a partial chunk).
        self.root[name].append(data[:full], axis=0)
        self._buffers[name] = [data[full:]] if full < len(data) else []

    def append_tile(self, i: int, rows: dict, flat: dict | None = None, **tile_columns) -> None:
        """Rows of tile ``i`` (tiles must come in order 0, 1, ...). ``rows``: every row array, equal lengths;
        ``flat``: values appended to flat arrays; ``tile_columns``: scalars for the tile index (``index/*``)."""
        if i != self.next_tile:
            raise ValueError(f"tile {i} written out of order (expected {self.next_tile})")
        lengths = {name: len(rows[name]) for name in self.row_names}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"tile {self.tiles.at[i, 'tile']}: row arrays of different lengths {lengths}")
        for name in self.row_names:
            array = self.root[name]
            values = np.asarray(rows[name], dtype=array.dtype).reshape(-1, *array.shape[1:])
            self._append(name, values)
        for name, values in (flat or {}).items():
            self._append(name, np.asarray(values, dtype=self.root[name].dtype).reshape(-1))
        self.counts[i] = next(iter(lengths.values())) if lengths else 0
        for key, value in tile_columns.items():
            self.tile_columns.setdefault(key, [None] * len(self.tiles))[i] = value
        self.next_tile += 1

    def write_array(self, name: str, values: np.ndarray) -> None:
        """A whole array that is not grouped by tile (matrices, centroids)."""
        values = np.asarray(values)
        self.root.create_array(name, shape=values.shape, dtype=values.dtype, compressors=[_compressor()],
                               **creation_kwargs(self.format_name, name, values.ndim))
        self.root[name][...] = values

    def finish(self, **attrs) -> Path:
        """Flush, write the offsets and the tile index, mark complete and move the store into place."""
        if self.next_tile != len(self.tiles):
            raise StageError(f"{self.path}: {len(self.tiles) - self.next_tile} tiles were never written")
        for name in self.row_names + self.flat_names:
            self._append(name, np.zeros((0, *self.root[name].shape[1:]), self.root[name].dtype), final=True)
        offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.write_array("tile_offsets", offsets)
        table = self.tiles.copy()
        table["rows"] = self.counts
        for key, values in self.tile_columns.items():
            table[key] = values
        write_index(self.root, table, self.format_name)
        manifest = build_manifest(self.tmp)
        self.root.attrs.update({**attrs, "num_tiles": len(self.tiles), "num_rows": int(offsets[-1]),
                                MANIFEST_KEY: manifest, "complete": True})
        self._swapping = True
        return swap_in(self.tmp, self.path)

    def abort(self) -> None:
        if getattr(self, "_swapping", False):  # the .tmp is complete: recover_swap finishes an interrupted swap
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False


class StageStore:
    """Read access to a finished stage store. ``rows(i)`` is the row slice of tile ``i``."""

    def __init__(self, path: Path, root, index: pd.DataFrame):
        self.path = path
        self.root = root
        self.index = index
        self.attrs = dict(root.attrs)
        self.offsets = np.asarray(root["tile_offsets"][...])

    def __len__(self) -> int:
        return len(self.index)

    @property
    def num_rows(self) -> int:
        return int(self.offsets[-1])

    @property
    def fingerprint(self) -> str:
        return self.attrs["fingerprint"]

    def rows(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def read(self, name: str, i: int) -> np.ndarray:
        """Rows of tile ``i`` of a row array."""
        return np.asarray(self.root[name][self.rows(i)])

    def read_all(self, name: str) -> np.ndarray:
        """A whole array."""
        return np.asarray(self.root[name][...])

    def tile_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """Tile index of each global row index."""
        return np.searchsorted(self.offsets, np.asarray(rows), side="right") - 1


def open_stage(path, format_name: str | tuple[str, ...]) -> StageStore:
    """Open a finished stage store of the given format(s); ``StageError`` says what is wrong otherwise
    (missing, unfinished, damaged: differs from its manifest). Finishes a swap a killed writer left half-done.
    ``path``: the store's folder or its ``zarr.json`` (what the Snakemake rules track)."""
    path = store_folder(path)
    recover_swap(path, is_finished)
    formats = (format_name,) if isinstance(format_name, str) else tuple(format_name)
    if not path.is_dir():
        hint = " (an unfinished write exists beside it: the job was killed; rerun the stage)" \
            if temporary_path(path).exists() else ""
        raise StageError(f"{path}: no {' / '.join(formats)} store here{hint}")
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as err:  # noqa: BLE001 - zarr raises several types for a broken folder
        raise StageError(f"{path}: not a Zarr store ({err})") from None
    attrs = dict(root.attrs)
    if attrs.get("format") not in formats:
        raise StageError(f"{path}: format {attrs.get('format')!r}, expected {' or '.join(map(repr, formats))}")
    legacy = check_version(path, root, attrs, StageError, REBUILD, "rerun the stage")
    check_manifest(path, attrs, StageError, REBUILD)
    return StageStore(path, root, load_index(path, root, legacy, attrs, StageError, REBUILD))


def input_entry(store) -> dict:
    """``{"path", "fingerprint"}`` of an input store (tile store or stage store), for ``attrs["inputs"]``."""
    return {"path": str(Path(store.path).resolve()), "fingerprint": str(store.attrs.get("fingerprint"))}


def check_input(store: StageStore, name: str, actual, what_to_rerun: str) -> None:
    """Raise ``StageError`` when ``store`` was built from another version of its input ``name`` than
    ``actual`` (a tile store or stage store opened now). ``name`` ``"tiles"`` compares the tile-store
    fingerprint every stage carries in ``attrs["tile_fingerprint"]``."""
    if name == "tiles":
        recorded = store.attrs.get("tile_fingerprint")
    else:
        recorded = store.attrs.get("inputs", {}).get(name, {}).get("fingerprint")
    current = str(actual.attrs.get("fingerprint"))
    if recorded != current:
        raise StageError(
            f"{store.path} was built from {name} with fingerprint {recorded}, but {actual.path} has fingerprint "
            f"{current} (rebuilt with other inputs or parameters); rerun {what_to_rerun}"
        )
