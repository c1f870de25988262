"""FAIR1M-2.0 XML reader (pre-training data; ``labelXml/<id>.xml`` next to ``images/<id>.tif``).

The schema below comes from third-party parsers and test files; the official devkit was not read::

    <annotation>
      <source><filename>0.tif</filename><origin>GF2/GF3</origin></source>
      <objects>
        <object>
          <coordinate>pixel</coordinate><type>rectangle</type><description>None</description>
          <possibleresult><name>Small Car</name><probability>1</probability></possibleresult>
          <points>
            <point>x1,y1</point> <point>x2,y2</point> <point>x3,y3</point> <point>x4,y4</point>
            <point>x1,y1</point>                    (closing point, repeats the first)
          </points>
        </object>
      </objects>
    </annotation>

The first four points are the polygon. FAIR1M has no difficulty flag (all 0) and no gsd in the label.
Class names are kept in FAIR1M's own spelling (``"Small Car"``); DOTA-style spellings such as
``"Small-Car"`` are mapped back through ``classes.FAIR1M.canonical``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .classes import FAIR1M
from .dior import LabelXml, check_class
from .dota import read_image_label_folder
from .records import ImageRecord


def _parse_point(xml: LabelXml, point, index: int) -> tuple[float, float]:
    raw = (point.text or "").strip()
    parts = [p.strip() for p in raw.split(",")]
    if len(parts) != 2:
        raise xml.error(point, f"<point> {raw!r} is not 'x,y'", index)
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise xml.error(point, f"<point> {raw!r} is not numeric", index) from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise xml.error(point, f"<point> {raw!r} is not finite", index)
    return x, y


def read_fair1m_xml(path, image_path=None, class_names=None) -> ImageRecord:
    """Read one FAIR1M(-2.0) XML label file.

    Args:
        path: ``labelXml/<id>.xml``.
        image_path: the matching image, stored in the record (not opened).
        class_names: if given (e.g. ``FAIR1M.names``), every class must be in it.

    Returns:
        ImageRecord with ``polygons`` (N, 8) from the first four points, ``difficulty`` all 0, ``extra``
        keys ``imagesource`` (``<origin>``, e.g. "GF2", else "FAIR1M") and ``filename`` when present.

    Raises:
        LabelFormatError: malformed XML, an object without ``<possibleresult><name>`` or ``<points>``,
            a point that is not ``x,y`` numbers, a point count other than 4 or 5 (5 must close the ring),
            or an unknown class.
    """
    xml = LabelXml(path)
    if xml.root.tag != "annotation":
        raise xml.error(xml.root, f"root element is <{xml.root.tag}>, expected <annotation>")
    polys, classes = [], []
    for index, obj in enumerate(xml.root.iter("object"), start=1):
        result = obj.find("possibleresult")
        if result is None:
            raise xml.error(obj, "missing <possibleresult>", index)
        # The first <possibleresult> is the label; FAIR1M ground truth has exactly one.
        raw_name = xml.text(result, "name", index)
        name = FAIR1M.canonical(raw_name) or raw_name
        check_class(xml, result.find("name"), name, class_names, index)
        points_elem = obj.find("points")
        if points_elem is None:
            raise xml.error(obj, "missing <points>", index)
        points = [_parse_point(xml, p, index) for p in points_elem.findall("point")]
        if len(points) == 5:
            if points[4] != points[0]:
                raise xml.error(points_elem, f"5 points but the last {points[4]} does not close the ring "
                                             f"at {points[0]}", index)
            points = points[:4]
        if len(points) != 4:
            raise xml.error(points_elem, f"expected 4 corners (5 points closing the ring), got {len(points)}",
                            index)
        polys.append([c for xy in points for c in xy])
        classes.append(name)
    source = xml.root.find("source")
    extra = {"imagesource": "FAIR1M"}
    if source is not None:
        origin, filename = source.findtext("origin"), source.findtext("filename")
        if origin and origin.strip():
            extra["imagesource"] = origin.strip()
        if filename and filename.strip():
            extra["filename"] = filename.strip()
    return ImageRecord(
        image_id=xml.path.stem,
        image_path=None if image_path is None else Path(image_path),
        polygons=np.asarray(polys, dtype=np.float64).reshape(-1, 8),
        classes=classes,
        difficulty=np.zeros(len(polys), dtype=np.int64),
        label_path=xml.path,
        extra=extra,
    )


def read_fair1m_folder(folder, label_dir=None, class_names=FAIR1M.names, require_labels=True) -> list[ImageRecord]:
    """Read FAIR1M images with their XML labels, sorted by id.

    Either ``folder`` is a split folder of the release (``train/part1``, ``validation``) holding ``images/``
    and ``labelXml/``, or ``folder`` is the image folder and ``label_dir`` the XML folder. Pairing rules are
    those of ``dota.read_image_label_folder``; ``class_names=None`` accepts any class name.
    """
    folder = Path(folder)
    image_dir, label_dir = (folder / "images", folder / "labelXml") if label_dir is None else (folder, label_dir)
    return read_image_label_folder(
        image_dir, label_dir, lambda label, image: read_fair1m_xml(label, image, class_names),
        ".xml", require_labels,
    )
