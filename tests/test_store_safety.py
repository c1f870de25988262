"""Stores never lose data on overwrite (safe swap) and never open damaged (manifest, ``mutdet verify``).

Every store here is written by the real writers (``TileStoreWriter`` through the pseudo-label test fixture,
``StageWriter``) from real DOTA tiles.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from mutdet_core import swap
from mutdet_core.cli import main
from mutdet_core.pseudo_labels.artifact import StageError, StageWriter, existing_output, open_stage
from mutdet_core.tiling import TileStore, TileStoreError
from tests.pseudo_label_fixtures import write_dota_tile_store

ONE_WINDOW = [("P1888", 0, 0)]  # 712 x 557 image: one padded tile with 64 vehicles (+ the blank tile)
STAGE_FORMAT = "mutdet-test-objects"


def _write_stage(tiles_path: Path, path: Path, fingerprint: str) -> Path:
    """A stage store (real ``StageWriter``) with one row per object of the tile store: its polygon."""
    tiles = TileStore.open(tiles_path)
    attrs = {"params": {}, "inputs": {}, "fingerprint": fingerprint, "tile_fingerprint": tiles.attrs["fingerprint"]}
    with StageWriter(path, STAGE_FORMAT, tiles.index, {"polygons": ((8,), "float32")}, attrs) as writer:
        for i in range(len(tiles)):
            polygons = tiles.read_objects(i)["polygons"]
            writer.append_tile(i, {"polygons": polygons}, area=float(np.abs(polygons).sum()))
        return writer.finish()


def _kill_between_renames(monkeypatch):
    """The old store is already aside when the job dies: the new one never reaches its name."""
    def killed(tmp, path):
        raise KeyboardInterrupt("killed between the renames")
    monkeypatch.setattr(swap, "_move_in", killed)


@pytest.fixture(scope="module")
def tile_store(shared_data, tmp_path_factory) -> Path:
    return write_dota_tile_store(shared_data, tmp_path_factory.mktemp("safety") / "tiles.zarr", ONE_WINDOW)


@pytest.fixture(scope="module")
def stage_store(tile_store, tmp_path_factory) -> Path:
    return _write_stage(tile_store, tmp_path_factory.mktemp("safety_stage") / "objects.zarr", "v1")


@pytest.fixture
def tile_copy(tile_store, tmp_path) -> Path:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(tile_store, copy)
    return copy


# --- item 1: the swap -------------------------------------------------------------------------------------

@pytest.mark.parametrize("tmp_survives", [True, False])
def test_tile_store_overwrite_killed_between_renames(shared_data, tmp_path, monkeypatch, tmp_survives):
    path = tmp_path / "tiles.zarr"
    write_dota_tile_store(shared_data, path, ONE_WINDOW)
    old_fingerprint = TileStore.open(path).attrs["fingerprint"]
    _kill_between_renames(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_dota_tile_store(shared_data, path, windows=[], overwrite=True)  # blank tile only
    monkeypatch.undo()
    # The old store is whole aside, the new one whole in .tmp: nothing was lost.
    assert not path.exists()
    assert TileStore.open(swap.aside_path(path)).attrs["fingerprint"] == old_fingerprint
    if not tmp_survives:  # e.g. the .tmp was deleted by hand: the old store must come back
        shutil.rmtree(swap.temporary_path(path))

    store = TileStore.open(path)  # finishes the swap
    if tmp_survives:
        assert store.attrs["fingerprint"] == "test-" and len(store) == 1
    else:
        assert store.attrs["fingerprint"] == old_fingerprint and len(store) == 2
        assert store.read_objects(0)["polygons"].shape == (64, 8)
    assert not swap.aside_path(path).exists() and not swap.temporary_path(path).exists()


def test_tile_store_rerun_completes_swap_and_old_copy_is_cleaned(shared_data, tmp_path, monkeypatch):
    path = tmp_path / "tiles.zarr"
    write_dota_tile_store(shared_data, path, ONE_WINDOW)
    _kill_between_renames(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_dota_tile_store(shared_data, path, windows=[], overwrite=True)
    monkeypatch.undo()
    # A rerun of the writer finishes the swap first, then finds the finished store (no overwrite: untouched).
    with pytest.raises(FileExistsError, match="already exists"):
        write_dota_tile_store(shared_data, path, windows=[])
    assert TileStore.open(path).attrs["fingerprint"] == "test-"
    assert not swap.aside_path(path).exists() and not swap.temporary_path(path).exists()

    # Killed after the new store is in but before the aside copy is deleted: the next open removes it.
    shutil.copytree(path, swap.aside_path(path))
    assert len(TileStore.open(path)) == 1 and not swap.aside_path(path).exists()


def test_stage_store_overwrite_killed_between_renames(tile_store, tmp_path, monkeypatch):
    path = _write_stage(tile_store, tmp_path / "objects.zarr", "v1")
    _kill_between_renames(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _write_stage(tile_store, path, "v2")
    monkeypatch.undo()
    assert not path.exists()
    assert open_stage(swap.aside_path(path), STAGE_FORMAT).fingerprint == "v1"
    # The stage's rerun check finishes the swap: the complete new store is up to date, nothing to redo.
    assert existing_output(path, "v2", STAGE_FORMAT) == path
    store = open_stage(path, STAGE_FORMAT)
    assert store.fingerprint == "v2" and store.num_rows == 64 and store.read("polygons", 0).shape == (64, 8)
    assert not swap.aside_path(path).exists() and not swap.temporary_path(path).exists()

    # Same kill, but only the old copy is left: open_stage restores it.
    _kill_between_renames(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _write_stage(tile_store, path, "v3")
    monkeypatch.undo()
    shutil.rmtree(swap.temporary_path(path))
    assert open_stage(path, STAGE_FORMAT).fingerprint == "v2"


# --- item 2: the manifest and mutdet verify ----------------------------------------------------------------

def test_intact_stores_pass_open_and_verify(tile_store, stage_store, capsys):
    store = TileStore.open(tile_store)
    manifest = store.attrs["manifest"]
    assert manifest["arrays"]["pixels/800"] == {"shape": [2, 800, 800, 3], "chunk_files": 2}
    assert manifest["arrays"]["objects/difficulty"]["chunk_files"] == 0  # all zero: Zarr writes no chunk
    assert manifest["arrays"]["index/tile"] == {"shape": [2], "chunk_files": 1}  # the tile index is arrays too
    assert "index" not in manifest and not (tile_store / "tiles.csv").exists()
    assert open_stage(stage_store, STAGE_FORMAT).attrs["manifest"]["arrays"]["polygons"]["chunk_files"] == 1
    for path in (tile_store, stage_store):
        assert main(["verify", str(path)]) == 0
        assert capsys.readouterr().out.startswith(f"OK {path}")


def test_deleted_chunk_fails_open(tile_copy, stage_store, tmp_path):
    (tile_copy / "pixels/800/c/1/0/0/0").unlink()
    with pytest.raises(TileStoreError, match=r"array pixels/800: 1 of its 2 chunk files are missing "
                                             r"\(e\.g\. pixels/800/c/1/0/0/0\).*rebuild it"):
        TileStore.open(tile_copy)
    assert main(["verify", str(tile_copy)]) == 1

    stage = tmp_path / "stage.zarr"
    shutil.copytree(stage_store, stage)
    (stage / "polygons/c/0/0").unlink()
    with pytest.raises(StageError, match=r"array polygons: 1 of its 1 chunk files are missing.*rebuild it"):
        open_stage(stage, STAGE_FORMAT)


def _cut_index_array(store: Path, column: str, rows: int) -> None:
    """Shorten ``index/<column>`` to ``rows`` rows in its metadata (as a half-written index would be)."""
    meta_path = store / "index" / column / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"] = [rows]
    meta_path.write_text(json.dumps(meta))


def test_cut_index_fails_open(tile_copy, stage_store, tmp_path):
    _cut_index_array(tile_copy, "tile", 1)
    with pytest.raises(TileStoreError, match=r"array index/tile has shape \[1\], the manifest recorded \[2\]"):
        TileStore.open(tile_copy)
    stage = tmp_path / "stage.zarr"
    shutil.copytree(stage_store, stage)
    shutil.rmtree(stage / "index" / "rows" / "c")
    with pytest.raises(StageError, match=r"array index/rows: 1 of its 1 chunk files are missing"):
        open_stage(stage, STAGE_FORMAT)


def test_store_without_manifest_opens_with_warning(tile_copy, caplog):
    meta = json.loads((tile_copy / "zarr.json").read_text())
    del meta["attributes"]["manifest"]  # as written before the manifest existed
    (tile_copy / "zarr.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="mutdet_core.store_manifest"):
        assert len(TileStore.open(tile_copy)) == 2
    assert "written before stores recorded a manifest" in caplog.text
    # Without a manifest the row count is still checked against num_tiles, and the columns against each other.
    _cut_index_array(tile_copy, "image_id", 1)
    with pytest.raises(TileStoreError, match=r"index: columns of different lengths \{'tile': 2, 'image_id': 1"):
        TileStore.open(tile_copy)
    for column in json.loads((tile_copy / "index" / "zarr.json").read_text())["attributes"]["columns"]:
        _cut_index_array(tile_copy, column, 1)
    with pytest.raises(TileStoreError, match="index: 1 rows, the store holds 2 tiles"):
        TileStore.open(tile_copy)


def test_corrupt_chunk_opens_but_fails_verify(tile_copy, capsys):
    chunk = tile_copy / "pixels/800/c/0/0/0/0"
    data = bytearray(chunk.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(4096)  # a lost disk block reads back as zeros
    chunk.write_bytes(bytes(data))
    assert len(TileStore.open(tile_copy)) == 2  # the cheap check does not read chunks
    assert main(["verify", str(tile_copy)]) == 1
    err = capsys.readouterr().err
    assert "BROKEN" in err and "array pixels/800 chunk c/0/0/0/0 does not decode" in err
