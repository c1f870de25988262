"""OHD-SJTU rotation_txt reader on hand-written files (no real OHD-SJTU label is available to the tests)."""
from __future__ import annotations

import numpy as np
import pytest

from mutdet_core.datasets import (OHD_SJTU_L, OHD_SJTU_S, LabelFormatError, read_ohd_sjtu_folder,
                                  read_ohd_sjtu_txt)

TWO = ("100 100 140 100 140 120 100 120 140 110 plane 0\n"
       "\n"
       "10.5 20 30 20 30 60 10.5 60 20 20 ship\n")


def test_two_objects_with_heads(tmp_path):
    path = tmp_path / "P0001.txt"
    path.write_text(TWO)
    rec = read_ohd_sjtu_txt(path, image_path=tmp_path / "P0001.jpg", class_names=OHD_SJTU_S.names)
    assert rec.image_id == "P0001" and rec.classes == ["plane", "ship"]
    np.testing.assert_array_equal(rec.polygons[1], [10.5, 20, 30, 20, 30, 60, 10.5, 60])
    np.testing.assert_array_equal(rec.head_points, [[140, 110], [20, 20]])
    assert rec.difficulty.tolist() == [0, 0] and rec.gsd is None
    assert rec.extra["imagesource"] == "OHD-SJTU"
    # subset keeps head points aligned
    assert rec.subset(np.array([False, True])).head_points.tolist() == [[20, 20]]


def test_difficult_header_and_l_classes(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("imagesource:GoogleEarth\ngsd:null\n1 1 5 1 5 3 1 3 5 2 large-vehicle 1\n")
    rec = read_ohd_sjtu_txt(path, class_names=OHD_SJTU_L.names)
    assert rec.difficulty.tolist() == [1] and rec.gsd is None and rec.extra["imagesource"] == "GoogleEarth"
    with pytest.raises(LabelFormatError, match=r"a.txt:3: unknown class 'large-vehicle'"):
        read_ohd_sjtu_txt(path, class_names=OHD_SJTU_S.names)


@pytest.mark.parametrize("line,message", [
    ("1 1 5 1 5 3 1 3 plane 0", "got 10"),                  # DOTA line without head point
    ("1 1 5 1 5 3 1 3 5 2 plane 0 extra", "got 13"),
    ("1 1 5 1 5 3 1 3 5 y plane", "non-numeric"),
    ("1 1 5 1 5 3 1 inf 5 2 plane", "non-finite"),
    ("1 1 5 1 5 3 1 3 5 2 plane hard", "difficulty 'hard'"),
])
def test_bad_lines(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text("1 1 5 1 5 3 1 3 5 2 plane\n" + line + "\n")
    with pytest.raises(LabelFormatError, match=rf"bad.txt:2: .*{message}"):
        read_ohd_sjtu_txt(path)


def test_empty_and_zero_area(tmp_path):
    empty = tmp_path / "e.txt"
    empty.write_text("")
    rec = read_ohd_sjtu_txt(empty)
    assert len(rec) == 0 and rec.head_points.shape == (0, 2)
    flat = tmp_path / "f.txt"
    flat.write_text("3 3 3 3 3 3 3 3 3 3 ship\n")
    assert len(read_ohd_sjtu_txt(flat)) == 1


def test_folder(tmp_path, shared_data):
    images, labels = tmp_path / "images", tmp_path / "rotation_txt"
    images.mkdir(), labels.mkdir()
    (images / "a.jpg").symlink_to(shared_data / "dior_r_sample/JPEGImage/00001.jpg")
    (images / "b.jpg").symlink_to(shared_data / "dior_r_sample/JPEGImage/00001.jpg")
    (labels / "a.txt").write_text(TWO)
    (labels / "orphan.txt").write_text(TWO)  # label without image: skipped
    with pytest.raises(LabelFormatError, match="b.jpg has no label file"):
        read_ohd_sjtu_folder(images, labels)
    recs = read_ohd_sjtu_folder(images, labels, class_names=OHD_SJTU_S.names, require_labels=False)
    assert [(r.image_id, len(r)) for r in recs] == [("a", 2), ("b", 0)]
    split = read_ohd_sjtu_folder(tmp_path, class_names=OHD_SJTU_S.names, require_labels=False)
    assert [(r.image_id, len(r)) for r in split] == [("a", 2), ("b", 0)]
    assert split[0].head_points.tolist() == [[140, 110], [20, 20]]
