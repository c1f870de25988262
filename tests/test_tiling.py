"""Tiling: windows, objects, pixels and store behaviour, against an independent mmrotate re-statement."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from mutdet_core.datasets.dota import read_dota_folder
from mutdet_core.datasets.records import ImageRecord
from mutdet_core.tiling import TileStore, TileStoreError, TilingParams, parse_tile_name, sliding_windows
from mutdet_core.tiling.export import export_tiles
from mutdet_core.tiling.tiler import tile_split
from mutdet_core.datasets.classes import get_class_list
from tests.reference.mmrotate_img_split import get_sliding_window, split_image

DOTA = list(get_class_list("dota_v1").names)


@pytest.mark.parametrize("width,height", [(451, 839), (2304, 1792), (1111, 1182), (800, 800), (801, 1400),
                                          (1500, 1400), (300, 200), (799, 3000), (1401, 1401)])
def test_windows_match_reference(width, height):
    ours = sliding_windows(width, height, TilingParams())
    ref = get_sliding_window(width, height, [800], [200], 0.6)
    np.testing.assert_array_equal(ours, ref)


def test_window_starts_follow_spec():
    # SPEC 2.1: stride 600, last window shifted inward (start = W - 800).
    starts = sorted({int(w[0]) for w in sliding_windows(1500, 800, TilingParams())})
    assert starts == [0, 600, 700]
    assert sorted({int(w[0]) for w in sliding_windows(1400, 800, TilingParams())}) == [0, 600]


def test_tile_names_round_trip():
    assert parse_tile_name("P0168__800__600___0") == ("P0168", 800, 600, 0)
    assert parse_tile_name("P0168__1__600___0") == ("P0168", 1, 600, 0)
    assert parse_tile_name("a__b__0.5__12___34") == ("a__b", 0.5, 12, 34)
    with pytest.raises(ValueError, match="not a tile name"):
        parse_tile_name("P0168_800_600_0")


@pytest.fixture(scope="module")
def dota_store(shared_data, tmp_path_factory):
    root = shared_data / "dota_sample"
    records = read_dota_folder(root / "images", root / "labelTxt", class_names=DOTA)
    out = tmp_path_factory.mktemp("tiles") / "dota_sample.zarr"
    tile_split(records, out, TilingParams(), DOTA, dataset="dota_sample", split="train", threads=2, progress=False)
    return out


def test_export_equals_mmrotate_splitter(shared_data, dota_store, tmp_path):
    """The issue's acceptance check: same tile names, same pixels (padding included), same kept objects
    with the same difficulty, coordinates to 0.1 px, on the six real DOTA images at 800/200."""
    root = shared_data / "dota_sample"
    ref_dir, our_dir = tmp_path / "ref", tmp_path / "ours"
    ref_names = []
    for image in sorted((root / "images").glob("*.png")):
        ref_names += split_image(str(image), str(root / "labelTxt" / f"{image.stem}.txt"), image.stem, str(ref_dir))
    assert export_tiles(dota_store, our_dir, progress=False) == len(ref_names)

    ours = sorted(p.stem for p in (our_dir / "images").glob("*.png"))
    assert ours == sorted(ref_names)
    assert sorted(p.stem for p in (our_dir / "annfiles").glob("*.txt")) == sorted(ref_names)
    padded_tiles = 0
    for name in ref_names:
        ref_px = cv2.imread(str(ref_dir / "images" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        our_px = cv2.imread(str(our_dir / "images" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(our_px, ref_px, err_msg=name)
        padded_tiles += int((ref_px == np.array([104, 116, 124], np.uint8)).all(axis=-1).sum() > 1000)
        ref_lines = (ref_dir / "annfiles" / f"{name}.txt").read_text().splitlines()
        our_lines = (our_dir / "annfiles" / f"{name}.txt").read_text().splitlines()
        assert len(our_lines) == len(ref_lines), name
        for a, b in zip(our_lines, ref_lines):
            ta, tb = a.split(), b.split()
            assert ta[8:] == tb[8:], (name, a, b)  # class and difficulty
            np.testing.assert_allclose(np.float64(ta[:8]), np.float64(tb[:8]), atol=0.1)
    # P0075 (451 px wide) and P1888 (712 x 557) are smaller than a tile: their padding is checked above.
    assert padded_tiles >= 2


def test_store_contents(dota_store):
    store = TileStore.open(dota_store)
    assert len(store) == len(store.index) > 6
    assert set(store.index.columns) >= {"tile", "image_id", "x", "y", "size", "num_objects"}
    assert store.attrs["sizes"] == [800] and store.attrs["classes"] == DOTA
    i = int(np.argmax(store.index["num_objects"].to_numpy()))
    obj = store.read_objects(i)
    assert obj["polygons"].shape == (store.index.at[i, "num_objects"], 8)
    assert obj["polygons"].dtype == np.float32
    assert set(np.unique(obj["difficulty"])) <= {0, 1, 2}
    px = store.read_pixels(i)
    assert px.shape == (800, 800, 3) and px.dtype == np.uint8
    # RGB order: the stored tile equals the source image (BGR from cv2) flipped, at the tile offset.
    row = store.index.iloc[i]
    assert int(row["x"]) >= 0 and int(row["y"]) >= 0


def test_stored_pixels_are_rgb(shared_data, dota_store):
    store = TileStore.open(dota_store)
    i = int(np.flatnonzero(store.index["image_id"] == "P0168")[0])
    row = store.index.iloc[i]
    bgr = cv2.imread(str(shared_data / "dota_sample/images/P0168.png"))
    x, y = int(row["x"]), int(row["y"])
    np.testing.assert_array_equal(store.read_pixels(i), bgr[y:y + 800, x:x + 800, ::-1])


def test_existing_store_is_not_overwritten(shared_data, dota_store):
    records = read_dota_folder(shared_data / "dota_sample/images", shared_data / "dota_sample/labelTxt", DOTA)
    before = os.path.getmtime(dota_store / "zarr.json")
    with pytest.raises(FileExistsError, match="already exists"):
        tile_split(records[:1], dota_store, TilingParams(), DOTA)
    assert os.path.getmtime(dota_store / "zarr.json") == before
    TileStore.open(dota_store)


def test_killed_tiling_leaves_no_finished_store(shared_data, tmp_path, monkeypatch):
    """A job killed half-way (here: an exception in the third image) leaves nothing a rerun trusts."""
    from mutdet_core.tiling import tiler

    records = read_dota_folder(shared_data / "dota_sample/images", shared_data / "dota_sample/labelTxt", DOTA)
    calls = {"n": 0}
    real = tiler.load_image_rgb

    def dying(path, log=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(path, log=log)

    monkeypatch.setattr(tiler, "load_image_rgb", dying)
    out = tmp_path / "killed.zarr"
    with pytest.raises(KeyboardInterrupt):
        tile_split(records, out, TilingParams(), DOTA, threads=1, progress=False)
    assert not out.exists()
    with pytest.raises(TileStoreError, match="no tile store"):
        TileStore.open(out)
    # A half-written temporary folder (process killed with SIGKILL, no cleanup) is also never trusted.
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir()
    (tmp / "zarr.json").write_text("{}")
    with pytest.raises(TileStoreError, match="unfinished"):
        TileStore.open(out)
    monkeypatch.setattr(tiler, "load_image_rgb", real)
    tile_split(records[:1], out, TilingParams(), DOTA, threads=1, progress=False)
    assert not tmp.exists() and len(TileStore.open(out)) > 0


def test_unfinished_flag_is_detected(dota_store, tmp_path):
    copy = tmp_path / "copy.zarr"
    shutil.copytree(dota_store, copy)
    import zarr

    zarr.open_group(str(copy), mode="r+").attrs["complete"] = False
    with pytest.raises(TileStoreError, match="not finished"):
        TileStore.open(copy)


def test_fingerprint_mismatch_is_detected(dota_store):
    store = TileStore.open(dota_store)
    TileStore.open(dota_store, expected_fingerprint=store.attrs["fingerprint"])
    with pytest.raises(TileStoreError, match="other inputs"):
        TileStore.open(dota_store, expected_fingerprint="0" * 16)


def test_small_image_and_unlabelled_image(tmp_path):
    """An image smaller than a tile becomes one padded tile; an unlabelled image gets a tile without objects."""
    img = np.full((300, 500, 3), 200, np.uint8)
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), img)
    rec = ImageRecord("small", path, np.zeros((0, 8)), [], np.zeros(0, np.int64))
    out = tile_split([rec], tmp_path / "s.zarr", TilingParams(), DOTA, progress=False)
    store = TileStore.open(out)
    assert list(store.index["tile"]) == ["small__800__0___0"]
    px = store.read_pixels(0)
    assert (px[:300, :500] == 200).all()
    assert (px[300:, :] == np.array([124, 116, 104], np.uint8)).all()  # BGR (104,116,124) stored as RGB
    assert store.read_objects(0)["polygons"].shape == (0, 8)


def test_zero_area_polygon_is_dropped_and_truncation_marked(tmp_path):
    img = np.zeros((1000, 1000, 3), np.uint8)
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), img)
    polys = np.array([
        [10, 10, 50, 10, 50, 40, 10, 40],          # inside the first window only
        [20, 20, 20, 20, 20, 20, 20, 20],          # zero area: never kept
        [780, 100, 830, 100, 830, 120, 780, 120],  # crosses x = 800 with IoF 0.4 in window x=0: dropped there
        [560, 300, 830, 300, 830, 320, 560, 320],  # IoF 240/270 = 0.89 in window x=0: kept, difficulty 2
    ], dtype=np.float64)
    rec = ImageRecord("img", path, polys, ["plane", "ship", "ship", "bridge"], [0, 0, 1, 0])
    store = TileStore.open(tile_split([rec], tmp_path / "z.zarr", TilingParams(), DOTA, progress=False))
    names = list(store.index["tile"])
    assert sorted(names) == ["img__800__0___0", "img__800__0___200", "img__800__200___0", "img__800__200___200"]
    first = store.read_objects(names.index("img__800__0___0"))
    assert [DOTA[c] for c in first["class_id"]] == ["plane", "bridge"]
    assert first["difficulty"].tolist() == [0, 2]
    # translated, not clipped: the bridge still reaches x = 830 in tile coordinates
    assert first["polygons"][1].max() == 830
    second = store.read_objects(names.index("img__800__200___0"))
    assert [DOTA[c] for c in second["class_id"]] == ["ship", "bridge"]
    assert second["difficulty"].tolist() == [1, 0]
    np.testing.assert_allclose(second["polygons"][0], [580, 100, 630, 100, 630, 120, 580, 120])


def test_unknown_class_fails_before_any_pixel(tmp_path):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((100, 100, 3), np.uint8))
    rec = ImageRecord("a", path, np.array([[0, 0, 10, 0, 10, 10, 0, 10]]), ["dragon"], [0])
    with pytest.raises(ValueError, match="dragon"):
        tile_split([rec], tmp_path / "a.zarr", TilingParams(), DOTA)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "a.zarr.tmp").exists()


def test_invalid_params():
    with pytest.raises(ValueError, match="gap"):
        TilingParams(sizes=(800,), gaps=(800,))
    with pytest.raises(ValueError, match="sizes"):
        TilingParams(sizes=(800, 1024), gaps=(200,))
    with pytest.raises(ValueError, match="leaving no stride"):  # the same check as the config's (one definition)
        TilingParams(sizes=(16,), gaps=(15,), rates=(32.0,))
