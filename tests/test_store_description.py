"""Stores describe themselves (issue 16, item 3): every array of every stage store carries a description,
units where they apply and Zarr v3 dimension names; the tile index is arrays, nothing foreign is inside a
store, listing it raises no warning; ``mutdet info`` reads every kind; version 1 stores (``tiles.csv``)
still open. The stores are the real pseudo-label chain on real DOTA tiles (``pseudo_label_fixtures``)."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from mutdet_core.cli import main
from mutdet_core.pseudo_labels.artifact import StageError, existing_output, open_stage
from mutdet_core.store_index import GROUP, LEGACY_FILE
from mutdet_core.store_info import store_info
from mutdet_core.store_schema import UNDOCUMENTED
from mutdet_core.tiling import TileStore
from pseudo_label_fixtures import chain, tile_store_path  # noqa: F401  (fixtures)

KINDS = ("tiles", "masks", "boxes", "embeddings", "clusters", "pseudo_labels")


def _arrays(path: Path) -> dict[str, dict]:
    """``{name: zarr.json}`` of every array, found on disk (independent of the code under test)."""
    found = {}
    for meta in path.rglob("zarr.json"):
        content = json.loads(meta.read_text())
        if content["node_type"] == "array":
            found[meta.parent.relative_to(path).as_posix()] = content
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_every_array_is_described_with_dimension_names(chain, kind):
    path = Path(chain[kind])
    arrays = _arrays(path)
    assert "tile_offsets" in arrays or "objects/tile_offsets" in arrays
    assert {f"{GROUP}/tile", f"{GROUP}/image_id"} <= set(arrays)
    for name, meta in arrays.items():
        attrs = meta.get("attributes", {})
        assert attrs.get("description") and attrs["description"] != UNDOCUMENTED, f"{kind}: {name} undescribed"
        dims = meta.get("dimension_names")
        assert dims and len(dims) == len(meta["shape"]) and all(dims), f"{kind}: {name} has dims {dims}"
        assert not any(d.startswith("dim_") for d in dims), f"{kind}: {name} has generic dims {dims}"
        if "columns" in attrs:
            assert len(attrs["columns"]) == meta["shape"][-1], f"{kind}: {name} columns {attrs['columns']}"
        if isinstance(attrs.get("units"), list):
            assert len(attrs["units"]) == len(attrs["columns"])


@pytest.mark.parametrize("kind", KINDS)
def test_no_foreign_file_and_no_warning_on_listing(chain, kind):
    path = Path(chain[kind])
    assert not (path / LEGACY_FILE).exists()
    for file in path.rglob("*"):  # only Zarr metadata and chunk files (c/...)
        if file.is_file():
            parts = file.relative_to(path).parts
            assert file.name == "zarr.json" or "c" in parts, f"{kind}: foreign file {file.relative_to(path)}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ZarrUserWarning (or any other) fails the test
        members = dict(zarr.open_group(str(path), mode="r").members(max_depth=None))
    assert f"{GROUP}/tile" in members


def test_units_and_columns_of_the_geometry(chain):
    boxes = _arrays(Path(chain["boxes"]))
    rbox = boxes["rbox"]
    assert rbox["dimension_names"] == ["box", "rbox_param"]
    assert rbox["attributes"]["columns"] == ["cx", "cy", "w", "h", "theta"]
    assert rbox["attributes"]["units"] == ["px", "px", "px", "px", "rad"]
    assert rbox["attributes"]["angle_version"] == "le90"
    tiles = _arrays(Path(chain["tiles"]))
    assert tiles["pixels/800"]["dimension_names"] == ["pixel_row", "y", "x", "channel"]
    assert tiles["objects/polygons"]["attributes"]["units"] == "px"
    # Row arrays of one store share their first dimension name (they align row by row).
    pseudo = _arrays(Path(chain["pseudo_labels"]))
    assert {pseudo[n]["dimension_names"][0] for n in ("embedding", "pseudo_class", "similarity")} == {"box"}


def test_fields_the_classical_method_does_not_produce_are_documented(chain):
    masks = open_stage(chain["masks"], "mutdet-masks")
    assert masks.attrs["params"]["method"] == "classical"
    for name in ("predicted_iou", "point"):
        attrs = dict(masks.root[name].attrs)
        assert attrs["produced_by"] == ["sam"] and "NaN" in attrs["description"]
        assert attrs["not_produced"] == f"all NaN: method 'classical' does not produce {name}"
        assert np.isnan(masks.read_all(name)).all()  # NaN, as documented, not a made-up value
    for name in ("score", "stability_score", "area"):  # what the classical method does produce
        assert "not_produced" not in masks.root[name].attrs
        assert np.isfinite(masks.read_all(name)).all()


def test_pseudo_class_ids_and_cluster_names_share_the_numbering(chain):
    pseudo = open_stage(chain["pseudo_labels"], "mutdet-pseudo-labels")
    k = int(pseudo.attrs["num_clusters"])
    assert pseudo.attrs["classes"] == [f"cluster_{c}" for c in range(k)]
    labels = pseudo.read_all("pseudo_class")
    assert labels.min() >= 0 and labels.max() < k
    clusters = open_stage(chain["clusters"], "mutdet-clusters")
    assert clusters.root["centroids"].shape[0] == k


def test_tile_index_round_trips(chain):
    tiles = TileStore.open(chain["tiles"])
    assert list(tiles.index.columns) == ["tile", "image_id", "x", "y", "size", "num_objects", "pixel_row"]
    assert tiles.index["tile"].tolist()[-1] == "blank__800__0___0"
    assert tiles.index["x"].dtype == np.int64 and isinstance(tiles.index["image_id"][0], str)
    masks = open_stage(chain["masks"], "mutdet-masks")
    assert list(masks.index.columns) == ["tile", "image_id", "rows", "seconds"]
    assert masks.index["tile"].tolist() == tiles.index["tile"].tolist()
    assert masks.index["rows"].to_numpy().tolist() == np.diff(masks.offsets).tolist()
    clusters = open_stage(chain["clusters"], "mutdet-clusters")  # not grouped by tile: an empty index
    assert len(clusters.index) == 0 and list(clusters.index.columns) == ["tile", "image_id", "rows"]


@pytest.mark.parametrize("kind", KINDS)
def test_info_on_every_store_kind(chain, kind, capsys):
    path = Path(chain[kind])
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == ("mutdet-tiles" if kind == "tiles" else f"mutdet-{kind.replace('_', '-')}")
    assert set(info["arrays"]) == set(_arrays(path))
    assert info["description"] and info["description"] != info["format"]  # what the store is, in words
    for entry in info["arrays"].values():
        assert entry["description"] and entry["dimension_names"] and entry["dtype"]
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{path}: {info['format']} store, format version 2")
    if kind == "boxes":
        assert "rbox  (box=" in text and "theta [rad]" in text


def test_info_on_a_missing_store_is_one_clear_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nothing.zarr")]) == 2


def _as_version_1(path: Path) -> None:
    """Rewrite a store as version 1 wrote it: the index in ``tiles.csv``, a manifest entry for that file."""
    root = zarr.open_group(str(path), mode="r")
    from mutdet_core.store_index import read_index

    index = read_index(root, path, RuntimeError, "")
    shutil.rmtree(path / GROUP)
    index.to_csv(path / LEGACY_FILE, index=False)
    meta = json.loads((path / "zarr.json").read_text())
    attrs = meta["attributes"]
    attrs["format_version"] = 1
    attrs["manifest"]["arrays"] = {k: v for k, v in attrs["manifest"]["arrays"].items() if not k.startswith("index/")}
    attrs["manifest"]["index"] = {"file": LEGACY_FILE, "rows": len(index),
                                  "bytes": (path / LEGACY_FILE).stat().st_size}
    (path / "zarr.json").write_text(json.dumps(meta))


def test_version_1_stores_still_open(chain, tmp_path, capsys):
    tiles = tmp_path / "tiles.zarr"
    shutil.copytree(chain["tiles"], tiles)
    _as_version_1(tiles)
    old, new = TileStore.open(tiles), TileStore.open(chain["tiles"])
    pd.testing.assert_frame_equal(old.index, new.index, check_dtype=False)
    np.testing.assert_array_equal(old.read_pixels(0), new.read_pixels(0))

    boxes = tmp_path / "boxes.zarr"
    shutil.copytree(chain["boxes"], boxes)
    _as_version_1(boxes)
    store = open_stage(boxes, "mutdet-boxes")
    assert store.index["tile"].tolist() == new.index["tile"].tolist()
    np.testing.assert_array_equal(store.read_all("rbox"), open_stage(chain["boxes"], "mutdet-boxes").read_all("rbox"))
    assert main(["info", str(boxes)]) == 0 and "format version 1" in capsys.readouterr().out
    # Running the stage again rewrites a version 1 store (same results, current layout).
    assert existing_output(boxes, store.fingerprint, "mutdet-boxes") is None
    # A cut tiles.csv is still caught by the version 1 manifest.
    (boxes / LEGACY_FILE).write_text((boxes / LEGACY_FILE).read_text()[:-5])
    with pytest.raises(StageError, match="tiles.csv has .* bytes, the manifest recorded"):
        open_stage(boxes, "mutdet-boxes")


def test_unknown_version_names_the_fix(chain, tmp_path):
    path = tmp_path / "boxes.zarr"
    shutil.copytree(chain["boxes"], path)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["format_version"] = 99
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StageError, match=r"format version 99, this code reads \(1, 2\); rebuild it"):
        open_stage(path, "mutdet-boxes")


def test_store_info_json_is_serialisable(chain):
    json.dumps(store_info(chain["masks"]))
