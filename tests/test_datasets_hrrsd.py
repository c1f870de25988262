"""HRRSD VOC reader on hand-written files (no real HRRSD label is available to the tests)."""
from __future__ import annotations

import numpy as np
import pytest

from mutdet_core.datasets import HRRSD, LabelFormatError, read_hrrsd_folder, read_hrrsd_split, read_hrrsd_xml


def _obj(name, box, difficult=None):
    keys = ("xmin", "ymin", "xmax", "ymax")
    vals = "".join(f"<{k}>{v}</{k}>" for k, v in zip(keys, box))
    diff = "" if difficult is None else f"<difficult>{difficult}</difficult>\n"
    return f"<object>\n<name>{name}</name>\n<pose>Unspecified</pose>\n{diff}<bndbox>{vals}</bndbox>\n</object>\n"


def _file(path, *objects):
    path.write_text("<annotation>\n<folder>OPT2017</folder>\n<filename>a.jpg</filename>\n"
                    "<size><width>1000</width><height>800</height><depth>3</depth></size>\n"
                    + "".join(objects) + "</annotation>\n")
    return path


def test_boxes_become_clockwise_polygons(tmp_path):
    rec = read_hrrsd_xml(_file(tmp_path / "a.xml", _obj("airplane", (10, 20, 50, 35)),
                               _obj("T junction", (0, 0, 100.5, 40), difficult=1)), class_names=HRRSD.names)
    assert rec.image_id == "a" and rec.classes == ["airplane", "T junction"]
    # TL, TR, BR, BL: clockwise on screen (y down)
    np.testing.assert_array_equal(rec.polygons[0], [10, 20, 50, 20, 50, 35, 10, 35])
    np.testing.assert_array_equal(rec.polygons[1], [0, 0, 100.5, 0, 100.5, 40, 0, 40])
    assert rec.difficulty.tolist() == [0, 1]
    assert rec.extra == {"imagesource": "HRRSD", "width": 1000, "height": 800}
    # Signed shoelace area > 0 in image coordinates (y down) means clockwise on screen.
    p = rec.polygons[0].reshape(4, 2)
    signed = 0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])
    assert signed == 40 * 15


def test_spelling_variants_map_to_hrrsd_names(tmp_path):
    rec = read_hrrsd_xml(_file(tmp_path / "a.xml", _obj("T-junction", (0, 0, 1, 1)),
                               _obj("Parking_Lot", (0, 0, 1, 1))), class_names=HRRSD.names)
    assert rec.classes == ["T junction", "parking lot"]


@pytest.mark.parametrize("obj,message", [
    (_obj("ship", (1, 2, 3)), "missing <ymax>"),
    (_obj("ship", (1, 2, "x", 4)), "<xmax> 'x' is not a number"),
    (_obj("ship", (5, 2, 3, 4)), "xmax < xmin"),
    ("<object><name>ship</name></object>\n", "missing <bndbox>"),
    (_obj("submarine", (1, 2, 3, 4)), "unknown class 'submarine'"),
    (_obj("ship", (1, 2, 3, 4), difficult="maybe"), "<difficult> 'maybe' is not a number"),
])
def test_bad_objects(tmp_path, obj, message):
    with pytest.raises(LabelFormatError, match=message) as err:
        read_hrrsd_xml(_file(tmp_path / "b.xml", _obj("ship", (0, 0, 9, 9)), obj), class_names=HRRSD.names)
    assert "object 2" in str(err.value) and "b.xml" in str(err.value)


def test_zero_area_kept(tmp_path):
    assert len(read_hrrsd_xml(_file(tmp_path / "a.xml", _obj("ship", (5, 5, 5, 9))))) == 1


def test_split(tmp_path, shared_data):
    root = tmp_path / "HRRSD" / "OPT2017"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    _file(root / "Annotations/00012.xml", _obj("bridge", (1, 1, 5, 5)))
    _file(root / "Annotations/00013.xml")
    (root / "JPEGImages/00012.jpg").symlink_to(shared_data / "dior_r_sample/JPEGImage/00001.jpg")
    (root / "JPEGImages/00013.jpg").symlink_to(shared_data / "dior_r_sample/JPEGImage/00001.jpg")
    (root / "ImageSets/Main/train.txt").write_text("00013\n00012\n")
    for given in (root.parent, root):  # the HRRSD folder or OPT2017 itself
        recs = read_hrrsd_split(given, "train")
        assert [(r.image_id, len(r)) for r in recs] == [("00013", 0), ("00012", 1)]
        assert recs[1].image_path == root / "JPEGImages/00012.jpg"
    (root / "ImageSets/Main/val.txt").write_text("00014\n")
    with pytest.raises(LabelFormatError, match=r"val.txt:1: image id '00014' has no annotation"):
        read_hrrsd_split(root, "val")
    with pytest.raises(FileNotFoundError, match="test.txt"):
        read_hrrsd_split(root, "test")
    # All images regardless of the split lists, sorted by id.
    assert [r.image_id for r in read_hrrsd_folder(root.parent)] == ["00012", "00013"]
    (root / "JPEGImages/00099.jpg").symlink_to(shared_data / "dior_r_sample/JPEGImage/00001.jpg")
    with pytest.raises(LabelFormatError, match="00099.jpg has no label file"):
        read_hrrsd_folder(root)
    assert len(read_hrrsd_folder(root, require_labels=False)) == 3
