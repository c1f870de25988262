"""Bad inputs end in one clear line naming the file, or are handled correctly (issue 15, items 4, 5, 7).

Every case writes its own small files in ``tmp_path``; CLI cases run ``mutdet`` in-process and check that
stderr holds one error line and no traceback.
"""
from __future__ import annotations

import logging
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from mutdet_core.cli import main
from mutdet_core.datasets.dota import read_dota_folder, read_dota_txt, read_task1_folder, untangle_quads
from mutdet_core.datasets.images import ImageReadError, image_size, load_image_rgb
from mutdet_core.datasets.records import ImageRecord, LabelFormatError
from mutdet_core.evaluation.dota_eval import evaluate_detections, read_image_ids
from mutdet_core.tiling.store import TileStore
from mutdet_core.tiling.tiler import tile_split
from mutdet_core.tiling.windows import TilingParams, window_iof

BOWTIE = "10 10 100 100 100 10 10 100 plane 0"


def _dataset(root: Path, images: dict[str, tuple[int, int]], labels: dict[str, str], ext=".png") -> Path:
    """``root/images/<id><ext>`` (grey, ``(width, height)``) and ``root/labelTxt/<id>.txt``."""
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    for image_id, (w, h) in images.items():
        assert cv2.imwrite(str(root / "images" / f"{image_id}{ext}"), np.full((h, w, 3), 90, np.uint8))
    for image_id, text in labels.items():
        (root / "labelTxt" / f"{image_id}.txt").write_text(text, encoding="utf-8")
    return root


def _tile_cli(root: Path, out: Path, capsys, labels=True) -> tuple[int, str]:
    args = ["tile", str(out), "--images", str(root / "images"), "--classes", "dota_v1"]
    rc = main(args + (["--labels", str(root / "labelTxt")] if labels else []))
    return rc, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "ERROR" in line]
    assert len(errors) == 1, err
    return errors[0]


# --- item 4a: self-intersecting polygon ------------------------------------------------------------------

def test_bowtie_is_repaired_with_a_warning_and_tiled(tmp_path, caplog):
    root = _dataset(tmp_path / "d", {"a": (300, 200)}, {"a": f"imagesource:x\ngsd:null\n{BOWTIE}\n"})
    raw = np.array([[10, 10, 100, 100, 100, 10, 10, 100]], np.float32)
    with pytest.raises(Exception, match="TopologyException"):  # what tiling hit before the repair
        window_iof(raw, np.array([[0, 0, 800, 800]]))
    with caplog.at_level(logging.WARNING):
        rec = read_dota_txt(root / "labelTxt/a.txt")
    assert rec.polygons.tolist() == [[10, 10, 100, 10, 100, 100, 10, 100]]  # clockwise on screen, start kept
    assert any("a.txt: line 3: self-intersecting" in r.getMessage() for r in caplog.records)
    store = tile_split(read_dota_folder(root / "images", root / "labelTxt"), tmp_path / "s.zarr",
                       TilingParams(), ["plane"])
    objects = TileStore.open(store).read_objects(0)
    assert objects["polygons"].tolist() == [[10, 10, 100, 10, 100, 100, 10, 100]]
    assert objects["difficulty"].tolist() == [0]


def test_untangle_leaves_valid_and_degenerate_polygons_alone():
    polys = np.array([[10, 10, 100, 10, 100, 100, 10, 100],   # clockwise square
                      [1, 187, 1, 187, 1, 219, 1, 219],        # collapsed tile-border box
                      [0, 0, 50, 50, 50, 0, 0, 50]], float)     # bow-tie
    out, fixed = untangle_quads(polys)
    assert fixed.tolist() == [False, False, True]
    assert out[:2].tolist() == polys[:2].tolist()
    assert out[2].tolist() == [0, 0, 50, 0, 50, 50, 0, 50]


# --- item 4b: image too large for OpenCV -----------------------------------------------------------------

def _forge_png(path: Path, width: int, height: int) -> Path:
    """A real 8x8 PNG whose IHDR claims ``width`` x ``height`` (CRC fixed, so decoders believe it)."""
    assert cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_png_over_opencv_pixel_limit_is_refused_from_its_header(tmp_path, capsys):
    root = _dataset(tmp_path / "d", {}, {})
    big = _forge_png(root / "images/huge.png", 60000, 60000)
    assert image_size(big) == (60000, 60000)
    with pytest.raises(ImageReadError, match=r"huge.png: 60000 x 60000 = 3600000000 pixels .*gdal_translate"):
        load_image_rgb(big)
    rc, err = _tile_cli(root, tmp_path / "s.zarr", capsys, labels=False)
    assert rc == 2 and "huge.png: 60000 x 60000" in _one_error_line(err)
    assert not (tmp_path / "s.zarr").exists()


# --- item 5a: nothing to tile; .webp ---------------------------------------------------------------------

@pytest.mark.parametrize("content", ["empty", "labels_only"])
def test_folder_without_images_stops_before_writing(tmp_path, capsys, content):
    root = _dataset(tmp_path / "d", {}, {})
    if content == "labels_only":
        (root / "images/a.txt").write_text("1 1 5 1 5 5 1 5 plane 0\n")
    with pytest.raises(FileNotFoundError, match=r"d/images has no images .*\.webp"):
        read_dota_folder(root / "images", None, require_labels=False)
    rc, err = _tile_cli(root, tmp_path / "s.zarr", capsys, labels=False)
    line = _one_error_line(err)
    assert rc == 2 and "has no images" in line
    assert ("only 1 other files (.txt)" in line) == (content == "labels_only")
    assert not (tmp_path / "s.zarr").exists()
    with pytest.raises(ValueError, match="no images to tile"):
        tile_split([], tmp_path / "s.zarr", TilingParams(), ["plane"])


def test_webp_images_are_tiled(tmp_path):
    root = _dataset(tmp_path / "d", {"w": (120, 100)}, {"w": "10 10 50 10 50 50 10 50 plane 0\n"}, ext=".webp")
    assert cv2.imread(str(root / "images/w.webp")) is not None  # this OpenCV build decodes WebP
    store = TileStore.open(tile_split(read_dota_folder(root / "images", root / "labelTxt"),
                                      tmp_path / "s.zarr", TilingParams(), ["plane"]))
    assert len(store) == 1 and store.read_objects(0)["class_id"].tolist() == [0]
    assert store.read_pixels(0)[:100, :120].min() == 90  # the image, lossless enough for a flat grey


# --- item 5b: difficulty range ---------------------------------------------------------------------------

def test_difficulty_out_of_range_names_file_and_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("gsd:null\n10 10 50 10 50 50 10 50 plane 0\n10 10 50 10 50 50 10 50 plane 300\n")
    with pytest.raises(LabelFormatError, match=r"a.txt:3: difficulty 300 is not 0 \(easy\), 1"):
        read_dota_txt(path)
    rec = ImageRecord("a", None, [[10, 10, 50, 10, 50, 50, 10, 50]], ["plane"], [300], label_path=path)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((60, 60, 3), np.uint8))
    rec.image_path = tmp_path / "a.png"
    with pytest.raises(ValueError, match=r"a.txt: object 1 has difficulty 300"):  # other readers' records
        tile_split([rec], tmp_path / "s.zarr", TilingParams(), ["plane"])


# --- items 5c, 5d: objects on padding, objects outside the image -----------------------------------------

def test_objects_on_padding_and_outside_the_image_are_counted(tmp_path, caplog):
    labels = "\n".join([
        "10 10 50 10 50 50 10 50 plane 0",          # inside
        "250 10 350 10 350 50 250 50 plane 0",      # partly beyond the right edge (x 300)
        "400 50 500 50 500 100 400 100 plane 0",    # wholly on padding, right
        "10 250 50 250 50 280 10 280 plane 0",      # wholly on padding, below (y 200)
        "-100 10 -50 10 -50 50 -100 50 plane 0",    # entirely outside, left: in no window
    ]) + "\n"
    root = _dataset(tmp_path / "d", {"a": (300, 200), "b": (300, 200)}, {"a": labels, "b": labels})
    with caplog.at_level(logging.WARNING):
        store = tile_split(read_dota_folder(root / "images", root / "labelTxt"), tmp_path / "s.zarr",
                           TilingParams(), ["plane"], dataset="t", split="val")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("t/val: 6 object(s) kept on padding pixels beyond their image, in 2 label file(s)")
               for m in messages), messages
    assert any(m.startswith("t/val: 2 object(s) lie entirely outside their image and are in no tile") for m in messages)
    assert len(TileStore.open(store).read_objects(0)["class_id"]) == 4  # kept, as mmrotate keeps them


def test_objects_inside_the_image_give_no_border_warning(tmp_path, caplog):
    root = _dataset(tmp_path / "d", {"a": (300, 200)}, {"a": "0 0 300 0 300 200 0 200 plane 0\n"})
    with caplog.at_level(logging.WARNING):
        tile_split(read_dota_folder(root / "images", root / "labelTxt"), tmp_path / "s.zarr", TilingParams(), ["plane"])
    assert not [r for r in caplog.records if "padding" in r.getMessage() or "outside" in r.getMessage()]


# --- item 5e: image ids DOTA result files cannot hold ----------------------------------------------------

@pytest.mark.parametrize("image_id, renamed", [("my image", "my_image"), ("Bild_ä", "Bild_a")])
def test_image_ids_with_spaces_or_non_ascii_are_refused(tmp_path, capsys, image_id, renamed):
    root = _dataset(tmp_path / "d", {image_id: (100, 100)}, {image_id: "10 10 50 10 50 50 10 50 plane 0\n"})
    rc, err = _tile_cli(root, tmp_path / "s.zarr", capsys)
    line = _one_error_line(err)
    assert rc == 2 and f"{image_id}.png: image id {image_id!r} has spaces or non-ASCII" in line
    assert f"rename the image and its label file to {renamed!r}" in line
    assert not (tmp_path / "s.zarr").exists()


# --- item 7 ----------------------------------------------------------------------------------------------

def test_non_utf8_result_and_id_files_name_the_file(tmp_path):
    dets = tmp_path / "dets"
    dets.mkdir()
    (dets / "Task1_plane.txt").write_bytes("Bild\xe4 0.9 1 1 5 1 5 5 1 5\n".encode("latin-1"))
    with pytest.raises(LabelFormatError, match=r"Task1_plane.txt: not UTF-8 text"):
        read_task1_folder(dets)
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"P0001\nBild\xe4\n")
    with pytest.raises(ValueError, match=r"ids.txt: not UTF-8 text"):
        read_image_ids(ids)


def test_unknown_image_message_gives_the_cli_flag(tmp_path):
    labels, dets = tmp_path / "labels", tmp_path / "dets"
    labels.mkdir(), dets.mkdir()
    (labels / "a.txt").write_text("10 10 50 10 50 50 10 50 plane 0\n")
    (dets / "Task1_plane.txt").write_text("a 0.9 10 10 50 10 50 50 10 50\nb 0.8 10 10 50 10 50 50 10 50\n")
    with pytest.raises(LabelFormatError, match=r"Task1_plane.txt:2: .*on_unknown_image='drop' \(command line: "
                                               r"--on-unknown-image drop\)"):
        evaluate_detections(dets, labels, class_names=["plane"])


def test_huge_coordinates_give_one_message_and_no_warnings(tmp_path, capsys):
    root = _dataset(tmp_path / "d", {"a": (100, 100)}, {"a": "1e300 10 100 10 100 50 10 50 plane 0\n"})
    with pytest.raises(LabelFormatError, match=r"a.txt:1: coordinate 1e\+300 is beyond ±1e\+06 px"):
        read_dota_txt(root / "labelTxt/a.txt")
    (tmp_path / "Task1_plane.txt").write_text("a 0.9 10 10 -1e300 10 50 50 10 50\n")
    with pytest.raises(LabelFormatError, match=r"Task1_plane.txt:1: coordinate -1e\+300 is beyond"):
        read_task1_folder(tmp_path)
    rc, err = _tile_cli(root, tmp_path / "s.zarr", capsys)
    assert rc == 2 and "a.txt:1: coordinate 1e+300" in _one_error_line(err)
    assert "Warning" not in err and "overflow" not in err
    rec = ImageRecord("a", root / "images/a.png", [[1e300, 10, 100, 10, 100, 50, 10, 50]], ["plane"], [0],
                      label_path=root / "labelTxt/a.txt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any numpy overflow warning fails the test
        with pytest.raises(ValueError, match=r"a.txt: object 1 has a coordinate beyond ±1e\+06 px"):
            tile_split([rec], tmp_path / "s.zarr", TilingParams(), ["plane"])
