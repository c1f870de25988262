"""DOTA label reading on every real DOTA fixture, bad input, drop_degenerate and the DOTA-layout converter."""
from __future__ import annotations

import numpy as np
import pytest

from mutdet_core.datasets import (DOTA_V1, ImageRecord, LabelFormatError, drop_degenerate, polygon_areas,
                                  read_dota_folder, read_dota_txt, read_task1_folder, records_to_dota_folder,
                                  write_dota_txt)
from mutdet_core.datasets.dota import dota_class_name, format_coord

# Object counts, difficult (1) counts and gsd of every label file, counted independently with awk.
DOTA_SAMPLE = {
    "P0075": (2, 0, 0.139152881468), "P0168": (36, 0, 2.68220901489e-06), "P0706": (536, 6, 0.255589285596),
    "P0770": (22, 0, 0.266578848023), "P1088": (34, 0, 0.1377814038), "P1234": (144, 44, 1.0),
    "P1888": (64, 0, 0.266170468393), "P2598": (26, 0, 0.113068841441), "P2709": (158, 17, 0.283767057345),
}
DOTA_DENSE = {"P0003": (55, 13, 0.115726939386), "P0004": (107, 34, 0.132459767176),
              "P0005": (130, 21, 0.120384949364)}
EVAL_CASE = {"P0003": (55, 13, 0.115726939386), "P0004": (107, 34, 0.132459767176),
             "P0007": (158, 36, 0.127603145209), "P0019": (109, 14, 0.108079065446)}
TILE = "P1478__1__853___962"


@pytest.mark.parametrize("folder,expected", [("dota_sample/labelTxt", DOTA_SAMPLE),
                                             ("dota_dense/labelTxt", DOTA_DENSE),
                                             ("dota_eval_case/row_DOTA_labels", EVAL_CASE)])
def test_every_full_image_label_file(shared_data, folder, expected):
    label_dir = shared_data / folder
    for image_id, (n, n_difficult, gsd) in expected.items():
        rec = read_dota_txt(label_dir / f"{image_id}.txt", class_names=DOTA_V1.names)
        assert rec.image_id == image_id
        assert len(rec) == n and rec.polygons.shape == (n, 8) and rec.polygons.dtype == np.float64
        assert int((rec.difficulty == 1).sum()) == n_difficult
        assert set(rec.difficulty.tolist()) <= {0, 1}
        assert rec.gsd == pytest.approx(gsd, rel=1e-12)
        assert set(rec.classes) <= set(DOTA_V1.names)
        assert rec.head_points is None


def test_specific_polygons_and_header(shared_data):
    # CRLF file; line 3 is the devkit's example object.
    rec = read_dota_txt(shared_data / "dota_sample/labelTxt/P0706.txt")
    np.testing.assert_array_equal(rec.polygons[0], [1054, 1028, 1063, 1011, 1111, 1040, 1112, 1062])
    assert rec.classes[0] == "ship" and rec.difficulty[0] == 1
    assert rec.extra["imagesource"] == "GoogleEarth"
    p1234 = read_dota_txt(shared_data / "dota_sample/labelTxt/P1234.txt")
    assert p1234.extra["imagesource"] == "GF" and p1234.gsd == 1.0
    np.testing.assert_array_equal(p1234.polygons[0], [2512, 3597, 2528, 3602, 2519, 3642, 2504, 3637])
    assert p1234.classes[0] == "bridge"
    p0075 = read_dota_txt(shared_data / "dota_sample/labelTxt/P0075.txt")
    assert p0075.classes == ["swimming-pool", "roundabout"]
    np.testing.assert_array_equal(p0075.polygons[1], [119, 270, 340, 270, 340, 526, 119, 526])


def test_eval_case_matches_dense_copy(shared_data):
    a = read_dota_txt(shared_data / "dota_eval_case/row_DOTA_labels/P0003.txt")
    b = read_dota_txt(shared_data / "dota_dense/labelTxt/P0003.txt")
    np.testing.assert_array_equal(a.polygons, b.polygons)
    assert a.classes == b.classes
    ids = (shared_data / "dota_eval_case/imgnamefile.txt").read_text().split()
    assert sorted(ids) == sorted(EVAL_CASE)


def test_pre_split_tile_without_header(shared_data):
    rec = read_dota_txt(shared_data / f"dota_dense/labelTxt/{TILE}.txt", class_names=DOTA_V1.names)
    assert len(rec) == 295 and rec.gsd is None and "imagesource" not in rec.extra
    assert np.bincount(rec.difficulty).tolist() == [287, 3, 5]
    np.testing.assert_array_equal(rec.polygons[0], [907, 127, 889, 126, 890, 88, 908, 89])
    assert rec.classes[0] == "small-vehicle" and rec.difficulty[0] == 1
    # Two collapsed boxes on the tile's left border are kept by the reader ...
    np.testing.assert_array_equal(rec.polygons[1], [1, 187, 1, 187, 1, 219, 1, 219])
    areas = polygon_areas(rec.polygons)
    assert np.flatnonzero(areas == 0).tolist() == [1, 2]
    # ... and removed by drop_degenerate on request.
    clean, dropped = drop_degenerate(rec)
    assert dropped == 2 and len(clean) == 293 and (polygon_areas(clean.polygons) > 0).all()
    assert clean.classes[1] == rec.classes[3]
    np.testing.assert_array_equal(clean.polygons[1], rec.polygons[3])
    same, none = drop_degenerate(clean)
    assert none == 0 and same is clean
    assert drop_degenerate(rec, min_area=1e9)[1] == 295


def test_polygon_area_value():
    # 4 x 3 rectangle, both orientations.
    assert polygon_areas([[0, 0, 4, 0, 4, 3, 0, 3], [0, 0, 0, 3, 4, 3, 4, 0]]).tolist() == [12.0, 12.0]


def test_read_folders(shared_data):
    sample = read_dota_folder(shared_data / "dota_sample/images", shared_data / "dota_sample/labelTxt",
                              class_names=DOTA_V1.names)
    # Labels without images (P1234, P2598, P2709) are skipped.
    assert [r.image_id for r in sample] == ["P0075", "P0168", "P0706", "P0770", "P1088", "P1888"]
    assert all(r.image_path.is_file() and r.image_path.suffix == ".png" for r in sample)
    assert sum(len(r) for r in sample) == 2 + 36 + 536 + 22 + 34 + 64
    listed = (shared_data / "dota_sample/images.txt").read_text().split()
    assert set(r.image_id for r in sample) < set(listed) and len(listed) == 9
    dense = read_dota_folder(shared_data / "dota_dense/images", shared_data / "dota_dense/labelTxt")
    assert [r.image_id for r in dense] == ["P0003", "P0004", "P0005", TILE]
    assert [len(r) for r in dense] == [55, 107, 130, 295]


def test_task1_fixtures(shared_data):
    evalc = read_task1_folder(shared_data / "dota_eval_case/result_classname", DOTA_V1.names)
    assert {k: len(v) for k, v in evalc.items()} == {"harbor": 55, "large-vehicle": 242, "ship": 36,
                                                     "small-vehicle": 137}
    image_id, score, poly = evalc["ship"][0]
    assert image_id == "P0019" and score == 0.698
    np.testing.assert_array_equal(poly, [5803, 3656, 5790, 3638, 5828, 3613, 5841, 3631])
    tiles = read_task1_folder(shared_data / "dota_sample/example_split/dota_dets", DOTA_V1.names)
    merged = read_task1_folder(shared_data / "dota_sample/example_split/merged_dets", DOTA_V1.names)
    assert set(tiles) == set(merged) == set(DOTA_V1.names)
    assert sum(map(len, tiles.values())) == 1632 and sum(map(len, merged.values())) == 857
    assert all("__" in d[0] for dets in tiles.values() for d in dets)
    assert {d[0] for dets in merged.values() for d in dets} == {
        "P0075", "P0168", "P0706", "P0770", "P1088", "P1234", "P1888", "P2598", "P2709"}


# ---------------------------------------------------------------------------------------------- bad input
def _write(tmp_path, text, name="X.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_short_line_names_file_and_line(tmp_path):
    path = _write(tmp_path, "imagesource:x\ngsd:0.5\n1 2 3 4 5 6 7 8 plane 0\n1 2 3 4 5 6 7 plane\n")
    with pytest.raises(LabelFormatError) as err:
        read_dota_txt(path)
    assert err.value.line == 4 and str(path) in str(err.value) and "8 tokens" in str(err.value)


def test_non_numeric_coordinate(tmp_path):
    path = _write(tmp_path, "1 2 3 4 5 six 7 8 plane 0\n")
    with pytest.raises(LabelFormatError, match=r"X.txt:1: non-numeric"):
        read_dota_txt(path)


def test_unknown_class(tmp_path):
    path = _write(tmp_path, "1 2 3 4 5 6 7 8 plane 0\n1 2 3 4 5 6 7 8 airplane 0\n")
    assert read_dota_txt(path).classes == ["plane", "airplane"]  # no class list: accepted as written
    with pytest.raises(LabelFormatError, match=r"X.txt:2: unknown class 'airplane'"):
        read_dota_txt(path, class_names=DOTA_V1.names)


def test_zero_area_polygon_is_kept_by_reader(tmp_path):
    path = _write(tmp_path, "5 5 5 5 5 5 5 5 plane 0\n0 0 2 0 2 2 0 2 ship 1\n")
    rec = read_dota_txt(path)
    assert len(rec) == 2
    clean, dropped = drop_degenerate(rec)
    assert dropped == 1 and clean.classes == ["ship"] and clean.difficulty.tolist() == [1]


def test_empty_label_file_and_gsd_null(tmp_path):
    empty = read_dota_txt(_write(tmp_path, "", "E.txt"))
    assert len(empty) == 0 and empty.polygons.shape == (0, 8) and empty.gsd is None
    header_only = read_dota_txt(_write(tmp_path, "imagesource:GoogleEarth\ngsd:null\n", "H.txt"))
    assert len(header_only) == 0 and header_only.gsd is None


def test_image_without_label(tmp_path, shared_data):
    images, labels = tmp_path / "images", tmp_path / "labelTxt"
    images.mkdir(), labels.mkdir()
    (images / "A.png").symlink_to(shared_data / "dota_sample/images/P0075.png")
    (images / "B.png").symlink_to(shared_data / "dota_sample/images/P1888.png")
    (labels / "A.txt").write_text("1 2 3 4 5 6 7 8 plane 0\n")
    with pytest.raises(LabelFormatError, match=r"B.png has no label file"):
        read_dota_folder(images, labels)
    recs = read_dota_folder(images, labels, require_labels=False)
    assert [(r.image_id, len(r)) for r in recs] == [("A", 1), ("B", 0)]
    assert recs[1].image_path == images / "B.png"


def test_write_rejects_class_with_space(tmp_path):
    rec = ImageRecord("x", None, np.zeros((1, 8)), ["Small Car"], [0])
    with pytest.raises(ValueError, match="Small Car"):
        write_dota_txt(rec, tmp_path / "x.txt")
    assert dota_class_name("Small Car") == "Small-Car" and dota_class_name("T  junction") == "T-junction"


def test_coordinates_printed_like_mmrotate_split_files():
    # mmrotate writes ' '.join(map(str, float32_row)).
    assert format_coord(1054) == "1054.0" and format_coord(0.1) == "0.1"
    assert format_coord(np.float32(853.7)) == "853.7" == str(np.float32(853.7))
    assert format_coord(-3.25) == "-3.25"


# ---------------------------------------------------------------------------------------------- converter
def test_records_to_dota_folder_round_trip(tmp_path, shared_data):
    recs = read_dota_folder(shared_data / "dota_dense/images", shared_data / "dota_dense/labelTxt")
    fair = ImageRecord("F1", shared_data / "dior_r_sample/JPEGImage/00001.jpg",
                       [[0, 0, 10, 0, 10, 5, 0, 5]], ["Small Car"], [0], extra={"imagesource": "GF2"})
    labels_only = ImageRecord("L1", None, np.zeros((0, 8)), [], [])
    out = tmp_path / "dota"
    written = records_to_dota_folder(recs + [fair, labels_only], out)
    assert [p.name for p in written] == [f"{r.image_id}.txt" for r in recs] + ["F1.txt", "L1.txt"]
    assert (out / "images/P0003.png").is_symlink()
    assert (out / "images/P0003.png").resolve() == (shared_data / "dota_dense/images/P0003.png").resolve()
    assert (out / "images/F1.jpg").is_symlink() and not (out / "images/L1.png").exists()
    back = read_dota_folder(out / "images", out / "labelTxt", require_labels=True)
    assert [r.image_id for r in back] == ["F1", "P0003", "P0004", "P0005", TILE]
    by_id = {r.image_id: r for r in back}
    for r in recs:
        np.testing.assert_allclose(by_id[r.image_id].polygons, r.polygons)
        assert by_id[r.image_id].classes == r.classes
        np.testing.assert_array_equal(by_id[r.image_id].difficulty, r.difficulty)
        assert by_id[r.image_id].gsd == r.gsd
    assert by_id["P0003"].extra["imagesource"] == "GoogleEarth"
    assert by_id["F1"].classes == ["Small-Car"] and by_id["F1"].extra["imagesource"] == "GF2"
    # Rewriting replaces links; copy mode writes real files.
    records_to_dota_folder(recs[:1], out, link="copy")
    assert not (out / "images/P0003.png").is_symlink()
    assert (out / "images/P0003.png").read_bytes() == (shared_data / "dota_dense/images/P0003.png").read_bytes()


def test_records_to_dota_folder_errors(tmp_path):
    a = ImageRecord("A", None, np.zeros((0, 8)), [], [])
    with pytest.raises(ValueError, match="occurs twice"):
        records_to_dota_folder([a, a], tmp_path / "o")
    missing = ImageRecord("M", tmp_path / "nope.png", np.zeros((0, 8)), [], [])
    with pytest.raises(FileNotFoundError, match="nope.png"):
        records_to_dota_folder([missing], tmp_path / "o")
    with pytest.raises(ValueError, match="link must be"):
        records_to_dota_folder([a], tmp_path / "o", link="hard")
