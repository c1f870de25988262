"""HRRSD reader: VOC XML with horizontal boxes, turned into 4-point polygons (pre-training data).

Layout (from the HRRSD README)::

    <root>/OPT2017/Annotations/<id>.xml     (``root`` may also be the OPT2017 folder itself)
    <root>/OPT2017/JPEGImages/<id>.jpg
    <root>/OPT2017/ImageSets/Main/{train,val,test,trainval}.txt

Each ``<object>`` has ``<name>`` and ``<bndbox>`` ``xmin ymin xmax ymax``. The polygon is the box corners
clockwise on screen from the top-left: ``(xmin,ymin) (xmax,ymin) (xmax,ymax) (xmin,ymax)``, the order DOTA
polygons of upright boxes have. Coordinates are kept as written (no VOC 1-based shift), as a plain
VOC-to-DOTA conversion does. Class names are mapped to ``classes.HRRSD`` spelling when they match it up to
case and separators (the raw XML spelling was not verified).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .classes import HRRSD
from .dior import LabelXml, check_class, read_split_list
from .dota import find_image, read_image_label_folder
from .records import ImageRecord, LabelFormatError


def read_hrrsd_xml(path, image_path=None, class_names=None) -> ImageRecord:
    """Read one HRRSD (VOC) XML file.

    Returns:
        ImageRecord with ``polygons`` (N, 8) = TL, TR, BR, BL corners of each ``<bndbox>``, ``difficulty``
        from ``<difficult>`` (0 when absent), ``extra`` keys ``imagesource`` ("HRRSD") and ``width``/
        ``height`` when the file has ``<size>``.

    Raises:
        LabelFormatError: malformed XML, an object without ``<name>``, ``<bndbox>`` or one of its four
            values, a non-numeric value, ``xmax < xmin`` or ``ymax < ymin``, or an unknown class.
    """
    xml = LabelXml(path)
    if xml.root.tag != "annotation":
        raise xml.error(xml.root, f"root element is <{xml.root.tag}>, expected <annotation>")
    polys, classes, diffs = [], [], []
    for index, obj in enumerate(xml.root.iter("object"), start=1):
        raw_name = xml.text(obj, "name", index)
        name = HRRSD.canonical(raw_name) or raw_name
        check_class(xml, obj.find("name"), name, class_names, index)
        box = obj.find("bndbox")
        if box is None:
            raise xml.error(obj, "missing <bndbox>", index)
        x0, y0, x1, y1 = (xml.number(box, k, index) for k in ("xmin", "ymin", "xmax", "ymax"))
        if x1 < x0 or y1 < y0:
            raise xml.error(box, f"xmax < xmin or ymax < ymin in ({x0}, {y0}, {x1}, {y1})", index)
        polys.append([x0, y0, x1, y0, x1, y1, x0, y1])
        classes.append(name)
        diffs.append(xml.optional_int(obj, "difficult", 0, index))
    extra = {"imagesource": "HRRSD"}
    size = xml.root.find("size")
    if size is not None and size.find("width") is not None and size.find("height") is not None:
        extra["width"] = int(xml.number(size, "width"))
        extra["height"] = int(xml.number(size, "height"))
    return ImageRecord(
        image_id=xml.path.stem,
        image_path=None if image_path is None else Path(image_path),
        polygons=np.asarray(polys, dtype=np.float64).reshape(-1, 8),
        classes=classes,
        difficulty=np.asarray(diffs, dtype=np.int64),
        label_path=xml.path,
        extra=extra,
    )


def _opt2017(root) -> Path:
    root = Path(root)
    return root / "OPT2017" if (root / "OPT2017").is_dir() else root


def read_hrrsd_folder(folder, class_names=HRRSD.names, require_labels=True) -> list[ImageRecord]:
    """Every image of an HRRSD folder (``JPEGImages/`` + ``Annotations/``; ``folder`` may be the HRRSD
    folder holding ``OPT2017``), sorted by id, ignoring the split lists; for pre-training on all images.
    Pairing rules are those of ``dota.read_image_label_folder``."""
    root = _opt2017(folder)
    return read_image_label_folder(
        root / "JPEGImages", root / "Annotations",
        lambda label, image: read_hrrsd_xml(label, image, class_names), ".xml", require_labels,
    )


def read_hrrsd_split(root, split: str, class_names=HRRSD.names, require_images: bool = True) -> list[ImageRecord]:
    """Read the HRRSD split ``ImageSets/Main/<split>.txt`` in list order.

    ``root`` is the HRRSD folder or its ``OPT2017`` subfolder. ``class_names=None`` accepts any name.
    Raises FileNotFoundError for a missing list or image (when ``require_images``), LabelFormatError for
    a listed id without an XML file (naming the list file and line) or a bad XML file.
    """
    root = _opt2017(root)
    list_file = root / "ImageSets" / "Main" / f"{split}.txt"
    ann_dir, image_dir = root / "Annotations", root / "JPEGImages"
    if not ann_dir.is_dir():
        raise FileNotFoundError(f"HRRSD annotation folder {ann_dir} does not exist")
    records = []
    for lineno, image_id in read_split_list(list_file):
        xml_path = ann_dir / f"{image_id}.xml"
        if not xml_path.is_file():
            raise LabelFormatError(list_file, f"image id {image_id!r} has no annotation {xml_path}", lineno)
        image = find_image(image_dir, image_id) if image_dir.is_dir() else None
        if image is None and require_images:
            raise FileNotFoundError(f"{list_file}:{lineno}: no image for id {image_id!r} in {image_dir}")
        records.append(read_hrrsd_xml(xml_path, image, class_names))
    return records
