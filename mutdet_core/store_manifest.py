"""What a finished Zarr store holds, recorded at completion and checked on every open (tile and stage stores).

``attrs["manifest"]`` (in the group's ``zarr.json``, written in the same update that sets ``complete``)::

    {"arrays": {"<name>": {"shape": [...], "chunk_files": n}, ...}}   every array, names relative to the root

(the tile index is arrays too, ``index/*``; stores of format version 1 kept it in a ``tiles.csv`` file and
their manifest also has ``"index": {"file": "tiles.csv", "rows": r, "bytes": b}``, still checked).

``chunk_files`` counts the files actually written under the array's folder (Zarr v3: ``<name>/c/...``),
not the chunk grid: Zarr skips chunks equal to the fill value (e.g. an all-zero ``difficulty``), so a
store can legitimately have fewer files than chunks. ``check_manifest`` only lists folders and stats
files (no chunk is read); ``verify_chunks`` (``mutdet verify``) decodes every chunk.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MANIFEST_KEY = "manifest"
_warned: set[str] = set()  # stores already warned about (opened many times, e.g. by data loader workers)


def store_folder(path) -> Path:
    """A store's folder, given the folder or its group ``zarr.json``: the Snakemake rules track a store by its
    ``zarr.json`` (a ``directory()`` output would get a ``.snakemake_timestamp`` file inside the store), so
    every opener and writer accepts both."""
    path = Path(path)
    return path.parent if path.name == "zarr.json" else path


def _array_folders(root: Path) -> dict[str, Path]:
    """``{name: folder}`` of every array under ``root`` (folders whose ``zarr.json`` says ``array``)."""
    found = {}
    for meta in sorted(root.rglob("zarr.json")):
        if meta.parent != root and json.loads(meta.read_text()).get("node_type") == "array":
            found[meta.parent.relative_to(root).as_posix()] = meta.parent
    return found


def count_chunk_files(array_dir: Path) -> int:
    """Files under an array's folder other than its ``zarr.json`` (one per written chunk)."""
    count, stack = 0, [str(array_dir)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    count += 1
    return count - int((array_dir / "zarr.json").is_file())


def build_manifest(root) -> dict:
    """The manifest of the store being finished at ``root`` (after its last chunk, index included, is written)."""
    root = Path(root)
    arrays = {}
    for name, folder in _array_folders(root).items():
        shape = json.loads((folder / "zarr.json").read_text())["shape"]
        arrays[name] = {"shape": list(shape), "chunk_files": count_chunk_files(folder)}
    return {"arrays": arrays}


def _missing_chunks(folder: Path, shape, limit: int = 3) -> list[str]:
    # Only called on a mismatch, so walking the whole chunk grid here costs nothing in the normal case.
    meta = json.loads((folder / "zarr.json").read_text())
    chunk_shape = meta["chunk_grid"]["configuration"]["chunk_shape"]
    separator = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
    grid = [math.ceil(s / c) for s, c in zip(shape, chunk_shape)]
    missing = []
    for idx in np.ndindex(*grid):
        key = separator.join(["c", *map(str, idx)])
        if not (folder / key).is_file():
            missing.append(key)
            if len(missing) == limit:
                break
    return missing


def check_manifest(path, attrs: dict, error, rebuild: str) -> None:
    """Raise ``error`` (the store's own error type) when an array's folder, shape or chunk-file count, or
    the index file's size, differs from the manifest. A store without a manifest (written before it
    existed) only logs a warning. ``rebuild`` says how to rebuild the store (the rule, ``--overwrite``)."""
    path = Path(path)
    manifest = attrs.get(MANIFEST_KEY)
    if manifest is None:
        if str(path) not in _warned:
            _warned.add(str(path))
            log.warning("%s: written before stores recorded a manifest, so missing chunks cannot be detected; "
                        "%s to add one", path, rebuild)
        return
    damaged = f"the store is damaged: {rebuild}"
    for name, entry in manifest["arrays"].items():
        folder = path / name
        if not (folder / "zarr.json").is_file():
            raise error(f"{path}: array {name} is missing; {damaged}")
        shape = json.loads((folder / "zarr.json").read_text())["shape"]
        if list(shape) != list(entry["shape"]):
            raise error(f"{path}: array {name} has shape {list(shape)}, the manifest recorded {entry['shape']}; {damaged}")
        found = count_chunk_files(folder)
        if found != entry["chunk_files"]:
            what = f"{entry['chunk_files'] - found} of its {entry['chunk_files']} chunk files are missing" \
                if found < entry["chunk_files"] else f"{found} chunk files, the manifest recorded {entry['chunk_files']}"
            missing = _missing_chunks(folder, shape) if found < entry["chunk_files"] else []
            hint = f" (e.g. {name}/{', '.join(missing)})" if missing else ""
            raise error(f"{path}: array {name}: {what}{hint}; {damaged}")
    index = manifest.get("index")  # version 1 stores: the tiles.csv file
    if index is None:
        return
    index_path = path / index["file"]
    size = index_path.stat().st_size if index_path.is_file() else None
    if size != index["bytes"]:
        raise error(f"{path}: {index['file']} has {size} bytes, the manifest recorded {index['bytes']} "
                    f"({index['rows']} rows): cut short or changed; {damaged}")


def check_index_rows(path, index_name: str, rows: int, attrs: dict, error, rebuild: str) -> None:
    """Raise ``error`` when the index table read back (``index_name``: ``tiles.csv`` or the ``index`` group)
    has another row count than ``attrs["num_tiles"]``."""
    expected = attrs.get("num_tiles")
    if expected is not None and rows != int(expected):
        raise error(f"{Path(path) / index_name}: {rows} rows, the store holds {expected} tiles (cut short or "
                    f"changed); the store is damaged: {rebuild}")


def verify_chunks(path) -> tuple[int, str | None]:
    """Decode every chunk of every array of the store at ``path``.

    Returns ``(chunks_read, problem)``: ``problem`` names the first array and chunk that does not decode
    (``None`` when all do). Codecs without checksums (Blosc) cannot notice every flipped byte: this finds
    truncated, zeroed or garbled chunks, not all silent changes.
    """
    import zarr

    path = Path(path)
    read = 0
    for name in _array_folders(path):
        array = zarr.open_array(str(path / name), mode="r")
        grid = [math.ceil(s / c) for s, c in zip(array.shape, array.chunks)]
        for idx in np.ndindex(*grid):
            key = array.metadata.encode_chunk_key(idx)
            if not (path / name / key).is_file():
                continue  # never written (fill value); a missing written chunk is found by check_manifest
            region = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, array.chunks, array.shape))
            try:
                array[region]
            except Exception as err:  # noqa: BLE001 - every codec raises its own type
                return read, f"{path}: array {name} chunk {key} does not decode ({type(err).__name__}: {err})"
            read += 1
    return read, None


def is_finished(folder, legacy_index_file: str = "tiles.csv") -> bool:
    """Whether ``folder`` holds a finished store (``complete`` set, which the writers do last; a version 1
    store also needs its ``legacy_index_file``): the test ``recover_swap`` applies to a ``.tmp`` copy before
    moving it in."""
    folder = Path(folder)
    try:
        attrs = json.loads((folder / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    if not attrs.get("complete"):
        return False
    return attrs.get("format_version", 1) >= 2 or (folder / legacy_index_file).is_file()


def verify_store(path) -> tuple[bool, str]:
    """``mutdet verify``: open a tile or stage store (cheap checks), then decode every chunk.
    Returns ``(ok, message)``; the message names the first broken array and chunk."""
    from .pseudo_labels.artifact import StageError, open_stage
    from .swap import recover_swap
    from .tiling.store import FORMAT as TILES_FORMAT, TileStore, TileStoreError

    path = store_folder(path)
    recover_swap(path, is_finished)
    if not (path / "zarr.json").is_file():
        return False, f"BROKEN {path}: no Zarr store here (check the path)"
    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
        if attrs.get("format") == TILES_FORMAT:
            TileStore.open(path)
        else:
            open_stage(path, str(attrs.get("format")))
    except (TileStoreError, StageError, OSError, ValueError) as err:
        return False, f"BROKEN {err}"
    read, problem = verify_chunks(path)
    if problem:
        return False, f"BROKEN {problem}; the store is damaged: rebuild it (rerun its rule, or --overwrite)"
    note = "" if MANIFEST_KEY in attrs else " (no manifest: written before stores recorded one)"
    return True, f"OK {path}: all {read} chunks of this {attrs.get('format')} store decode{note}"
