"""DIOR-R XML reader on the real sample (spaced folder name) and on broken copies of it."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from mutdet_core.datasets import DIOR_R, LabelFormatError, read_dior_split, read_dior_xml

ANN = "Annotations/Oriented Bounding Boxes"


def test_real_sample(shared_data):
    root = shared_data / "dior_r_sample"
    rec = read_dior_xml(root / ANN / "00001.xml", root / "JPEGImage/00001.jpg", class_names=DIOR_R.names)
    assert rec.image_id == "00001" and len(rec) == 1
    assert rec.classes == ["golffield"] and rec.difficulty.tolist() == [0]
    # left-top, right-top, right-bottom, left-bottom
    np.testing.assert_array_equal(rec.polygons[0], [133, 237, 684, 237, 684, 672, 133, 672])
    assert rec.extra == {"imagesource": "DIOR-R", "width": 800, "height": 800}
    assert rec.gsd is None and rec.image_path.name == "00001.jpg"


def test_real_sample_split_with_overrides(shared_data):
    root = shared_data / "dior_r_sample"
    recs = read_dior_split(root, "trainval", image_dir=root / "JPEGImage", list_file=root / "demo.txt")
    assert [r.image_id for r in recs] == ["00001"] and recs[0].image_path == root / "JPEGImage/00001.jpg"


def _standard_layout(tmp_path, shared_data, xml_text=None):
    """The released DIOR-R layout, built from the real sample."""
    src = shared_data / "dior_r_sample"
    root = tmp_path / "DIOR"
    (root / ANN).mkdir(parents=True)
    (root / "ImageSets/Main").mkdir(parents=True)
    (root / "JPEGImages-trainval").mkdir()
    (root / "JPEGImages-test").mkdir()
    xml = (src / ANN / "00001.xml").read_text() if xml_text is None else xml_text
    for image_id in ("00001", "00002", "11726"):
        (root / ANN / f"{image_id}.xml").write_text(xml)
    for image_id, folder in (("00001", "trainval"), ("00002", "trainval"), ("11726", "test")):
        (root / f"JPEGImages-{folder}" / f"{image_id}.jpg").symlink_to(src / "JPEGImage/00001.jpg")
    (root / "ImageSets/Main/train.txt").write_text("00001\n")
    (root / "ImageSets/Main/val.txt").write_text("00002\n\n")
    (root / "ImageSets/Main/test.txt").write_text("11726\n")
    return root


def test_standard_layout_splits(tmp_path, shared_data):
    root = _standard_layout(tmp_path, shared_data)
    assert [r.image_id for r in read_dior_split(root, "train")] == ["00001"]
    trainval = read_dior_split(root, "trainval")  # no trainval.txt: train then val
    assert [r.image_id for r in trainval] == ["00001", "00002"]
    assert all(r.image_path.parent.name == "JPEGImages-trainval" for r in trainval)
    test = read_dior_split(root, "test")
    assert [r.image_id for r in test] == ["11726"] and test[0].image_path.parent.name == "JPEGImages-test"
    with pytest.raises(ValueError, match="split must be"):
        read_dior_split(root, "training")


def test_split_missing_annotation_and_image(tmp_path, shared_data):
    root = _standard_layout(tmp_path, shared_data)
    (root / "ImageSets/Main/val.txt").write_text("00002\n00003\n")
    with pytest.raises(LabelFormatError, match=r"val.txt:2: image id '00003' has no annotation"):
        read_dior_split(root, "val")
    (root / ANN / "00003.xml").write_text((root / ANN / "00001.xml").read_text())
    with pytest.raises(FileNotFoundError, match=r"val.txt:2: no image for id '00003'"):
        read_dior_split(root, "val")
    recs = read_dior_split(root, "val", require_images=False)
    assert recs[1].image_path is None


def test_lowercase_mmrotate_names_are_normalised(tmp_path, shared_data):
    xml = (shared_data / "dior_r_sample" / ANN / "00001.xml").read_text()
    path = tmp_path / "a.xml"
    path.write_text(xml.replace("golffield", "expressway-toll-station"))
    rec = read_dior_xml(path, class_names=DIOR_R.names)
    assert rec.classes == ["Expressway-toll-station"]


def _object(name="ship", corners=(1, 2, 11, 2, 11, 7, 1, 7), difficult="1", drop=None):
    keys = ("x_left_top", "y_left_top", "x_right_top", "y_right_top",
            "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom")
    box = "".join(f"<{k}>{v}</{k}>" for k, v in zip(keys, corners) if k != drop)
    return (f"<object>\n<type>robndbox</type>\n<name>{name}</name>\n<difficult>{difficult}</difficult>\n"
            f"<robndbox>{box}</robndbox>\n<angle>0</angle>\n</object>\n")


def _xml(tmp_path, *objects):
    path = tmp_path / "01234.xml"
    path.write_text("<annotation>\n<filename>01234.jpg</filename>\n" + "".join(objects) + "</annotation>\n")
    return path


def test_synthetic_two_objects(tmp_path):
    rec = read_dior_xml(_xml(tmp_path, _object(), _object("vehicle", (5, 5, 9, 6, 8, 10, 4, 9), "0")))
    assert rec.classes == ["ship", "vehicle"] and rec.difficulty.tolist() == [1, 0]
    np.testing.assert_array_equal(rec.polygons[1], [5, 5, 9, 6, 8, 10, 4, 9])
    assert "width" not in rec.extra  # no <size>


def test_malformed_xml(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<annotation>\n<object>\n<name>ship</name>\n</annotation>\n")
    with pytest.raises(LabelFormatError, match=r"bad.xml:4: malformed XML: mismatched tag"):
        read_dior_xml(path)


def test_missing_corner_names_object_and_line(tmp_path):
    path = _xml(tmp_path, _object(), _object(drop="y_right_bottom"))
    with pytest.raises(LabelFormatError) as err:
        read_dior_xml(path)
    assert "object 2" in str(err.value) and "<y_right_bottom>" in str(err.value) and "01234.xml" in str(err.value)
    assert err.value.line == 14  # the second object's <robndbox> line (object 1 is lines 3-9)


def test_missing_robndbox(tmp_path):
    path = _xml(tmp_path, "<object><name>ship</name><bndbox><xmin>1</xmin></bndbox></object>\n")
    with pytest.raises(LabelFormatError, match="object 1 <object>: missing <robndbox>"):
        read_dior_xml(path)


def test_non_numeric_corner(tmp_path):
    with pytest.raises(LabelFormatError, match=r"<x_right_top> 'eleven' is not a number"):
        read_dior_xml(_xml(tmp_path, _object(corners=(1, 2, "eleven", 2, 11, 7, 1, 7))))


def test_unknown_class(tmp_path):
    path = _xml(tmp_path, _object("helipad"))
    assert read_dior_xml(path).classes == ["helipad"]
    with pytest.raises(LabelFormatError, match=r"01234.xml:5: object 1 <name>: unknown class 'helipad'"):
        read_dior_xml(path, class_names=DIOR_R.names)


def test_zero_area_kept_and_empty_file(tmp_path):
    rec = read_dior_xml(_xml(tmp_path, _object(corners=(3, 3, 3, 3, 3, 3, 3, 3))))
    assert len(rec) == 1
    empty = tmp_path / "empty.xml"
    empty.write_text("<annotation><filename>x.jpg</filename></annotation>")
    assert len(read_dior_xml(empty)) == 0
    blank = tmp_path / "blank.xml"
    blank.write_text("")
    with pytest.raises(LabelFormatError, match="malformed XML"):
        read_dior_xml(blank)


def test_missing_annotation_folder(tmp_path, shared_data):
    root = _standard_layout(tmp_path, shared_data)
    shutil.rmtree(root / "Annotations")
    with pytest.raises(FileNotFoundError, match="Oriented Bounding Boxes"):
        read_dior_split(root, "train")
