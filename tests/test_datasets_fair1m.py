"""FAIR1M-2.0 XML reader on hand-written files (no real FAIR1M label is available to the tests)."""
from __future__ import annotations

import numpy as np
import pytest

from mutdet_core.datasets import FAIR1M, LabelFormatError, read_fair1m_folder, read_fair1m_xml


def _obj(name, points):
    pts = "\n".join(f"<point>{p}</point>" for p in points)
    return (f"<object>\n<coordinate>pixel</coordinate>\n<type>rectangle</type>\n<description>None</description>\n"
            f"<possibleresult>\n<name>{name}</name>\n<probability>1</probability>\n</possibleresult>\n"
            f"<points>\n{pts}\n</points>\n</object>\n")


CAR = ["100.0,200.0", "130.5,200.0", "130.5,215.0", "100.0,215.0", "100.0,200.0"]
SHIP = ["10,10", "60,30", "50,55", "0,35", "10,10"]


def _file(tmp_path, *objects, name="17.xml", origin="GF2"):
    path = tmp_path / name
    path.write_text(
        "<?xml version='1.0' encoding='utf-8'?>\n<annotation>\n<source>\n<filename>17.tif</filename>\n"
        f"<origin>{origin}</origin>\n</source>\n<objects>\n" + "".join(objects) + "</objects>\n</annotation>\n")
    return path


def test_two_objects(tmp_path):
    rec = read_fair1m_xml(_file(tmp_path, _obj("Small Car", CAR), _obj("Liquid Cargo Ship", SHIP)),
                          image_path=tmp_path / "17.tif", class_names=FAIR1M.names)
    assert rec.image_id == "17" and len(rec) == 2
    assert rec.classes == ["Small Car", "Liquid Cargo Ship"]
    # closing point dropped; (x, y) pairs in file order
    np.testing.assert_array_equal(rec.polygons[0], [100, 200, 130.5, 200, 130.5, 215, 100, 215])
    np.testing.assert_array_equal(rec.polygons[1], [10, 10, 60, 30, 50, 55, 0, 35])
    assert rec.difficulty.tolist() == [0, 0] and rec.gsd is None
    assert rec.extra == {"imagesource": "GF2", "filename": "17.tif"}


def test_four_points_and_dota_spelling(tmp_path):
    # An unclosed ring of four points is accepted; "Small-Car" (DOTA-converted spelling) maps back.
    rec = read_fair1m_xml(_file(tmp_path, _obj("Small-Car", CAR[:4]), origin=""), class_names=FAIR1M.names)
    assert rec.classes == ["Small Car"] and rec.extra["imagesource"] == "FAIR1M"


def test_points_with_spaces(tmp_path):
    rec = read_fair1m_xml(_file(tmp_path, _obj("Bus", [" 1.5, 2 ", "3,2", "3,4", "1.5,4", "1.5,2"])))
    np.testing.assert_array_equal(rec.polygons[0], [1.5, 2, 3, 2, 3, 4, 1.5, 4])


@pytest.mark.parametrize("points,message", [
    (CAR[:3], "expected 4 corners"),
    (CAR[:4] + ["1,1"], "does not close the ring"),
    (["100.0;200.0"] + CAR[1:], "is not 'x,y'"),
    (["abc,200"] + CAR[1:], "is not numeric"),
    (["nan,200"] + CAR[1:], "is not finite"),
])
def test_bad_points(tmp_path, points, message):
    with pytest.raises(LabelFormatError, match=message) as err:
        read_fair1m_xml(_file(tmp_path, _obj("Bus", CAR), _obj("Bus", points)))
    assert "object 2" in str(err.value) and "17.xml" in str(err.value) and err.value.line > 20


def test_missing_parts_and_unknown_class(tmp_path):
    no_name = "<object><possibleresult><probability>1</probability></possibleresult></object>\n"
    with pytest.raises(LabelFormatError, match="missing <name>"):
        read_fair1m_xml(_file(tmp_path, no_name))
    with pytest.raises(LabelFormatError, match="missing <possibleresult>"):
        read_fair1m_xml(_file(tmp_path, "<object><points/></object>\n"))
    with pytest.raises(LabelFormatError, match="missing <points>"):
        read_fair1m_xml(_file(tmp_path, "<object><possibleresult><name>Bus</name></possibleresult></object>\n"))
    with pytest.raises(LabelFormatError, match="unknown class 'Spaceship'"):
        read_fair1m_xml(_file(tmp_path, _obj("Spaceship", CAR)), class_names=FAIR1M.names)
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><objects><object></objects></annotation>")
    with pytest.raises(LabelFormatError, match=r"bad.xml:1: malformed XML"):
        read_fair1m_xml(bad)


def test_no_objects_and_zero_area(tmp_path):
    assert len(read_fair1m_xml(_file(tmp_path))) == 0
    rec = read_fair1m_xml(_file(tmp_path, _obj("Van", ["5,5", "5,5", "5,5", "5,5", "5,5"])))
    assert len(rec) == 1  # kept; drop_degenerate removes it on request


def test_folder(tmp_path, shared_data):
    images, labels = tmp_path / "images", tmp_path / "labelXml"
    images.mkdir(), labels.mkdir()
    for stem in ("1", "2"):
        (images / f"{stem}.png").symlink_to(shared_data / "dota_sample/images/P0075.png")
    _file(labels, _obj("Bus", CAR), name="1.xml")
    with pytest.raises(LabelFormatError, match="2.png has no label file"):
        read_fair1m_folder(images, labels)
    recs = read_fair1m_folder(images, labels, require_labels=False)
    assert [(r.image_id, len(r)) for r in recs] == [("1", 1), ("2", 0)]
    # A release split folder (images/ + labelXml/) can be given alone.
    recs = read_fair1m_folder(tmp_path, require_labels=False)
    assert [(r.image_id, len(r)) for r in recs] == [("1", 1), ("2", 0)]
    assert recs[0].image_path == images / "1.png" and recs[0].label_path == labels / "1.xml"
