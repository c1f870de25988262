"""DIOR-R oriented-box XML reader, and the line-aware XML parsing the other XML readers share.

DIOR-R layout (as released; note the spaces in the annotation folder name)::

    <root>/Annotations/Oriented Bounding Boxes/<id>.xml
    <root>/JPEGImages-trainval/<id>.jpg         train and val images
    <root>/JPEGImages-test/<id>.jpg             test images
    <root>/ImageSets/Main/{train,val,test}.txt  one image id per line

Each ``<object>`` holds ``<name>``, ``<difficult>`` and ``<robndbox>`` with the four named corners
``x_left_top y_left_top x_right_top y_right_top x_right_bottom y_right_bottom x_left_bottom y_left_bottom``,
which become the polygon in that order. The ``<angle>`` element is redundant with the corners and ignored.
Class names are mapped to the raw DIOR-R spelling (``classes.DIOR_R``) so that lower-cased mmrotate-style
names read the same.
"""
from __future__ import annotations

import math
from pathlib import Path
from xml.etree import ElementTree as ET
from xml.parsers import expat

import numpy as np

from .classes import DIOR_R, normalize_dior_name
from .dota import find_image
from .records import ImageRecord, LabelFormatError

DIOR_ANNOTATION_SUBDIR = Path("Annotations") / "Oriented Bounding Boxes"
DIOR_CORNERS = ("x_left_top", "y_left_top", "x_right_top", "y_right_top",
                "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom")


class LabelXml:
    """A parsed XML label file that remembers each element's line, so errors can point at it.

    ElementTree forgets line numbers, so the tree is built from expat events here.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lines: dict[int, int] = {}
        parser = expat.ParserCreate()
        stack: list[ET.Element] = []
        roots: list[ET.Element] = []

        def start(tag, attrs):
            elem = ET.Element(tag, attrs)
            self._lines[id(elem)] = parser.CurrentLineNumber
            if stack:
                stack[-1].append(elem)
            else:
                roots.append(elem)
            stack.append(elem)

        def end(tag):
            stack.pop()

        def chars(data):
            elem = stack[-1]
            if len(elem):
                elem[-1].tail = (elem[-1].tail or "") + data
            else:
                elem.text = (elem.text or "") + data

        parser.StartElementHandler, parser.EndElementHandler = start, end
        parser.CharacterDataHandler = chars
        try:
            parser.Parse(self.path.read_bytes(), True)
        except expat.ExpatError as err:
            raise LabelFormatError(self.path, f"malformed XML: {expat.ErrorString(err.code)}", err.lineno) from None
        self.root = roots[0]

    def line(self, elem: ET.Element) -> int | None:
        return self._lines.get(id(elem))

    def error(self, elem: ET.Element, problem: str, index: int | None = None) -> LabelFormatError:
        """A LabelFormatError at ``elem``'s line; ``index`` names the object (1-based) in the message."""
        prefix = f"object {index} <{elem.tag}>: " if index is not None else ""
        return LabelFormatError(self.path, prefix + problem, self.line(elem))

    def text(self, elem: ET.Element, child: str, index: int | None = None) -> str:
        """Stripped text of ``elem/child``; missing or empty is an error."""
        node = elem.find(child)
        if node is None or not (node.text or "").strip():
            raise self.error(elem, f"missing <{child}>", index)
        return node.text.strip()

    def number(self, elem: ET.Element, child: str, index: int | None = None) -> float:
        """``elem/child`` as a finite float; missing, non-numeric or non-finite is an error."""
        raw = self.text(elem, child, index)
        try:
            value = float(raw)
        except ValueError:
            raise self.error(elem.find(child), f"<{child}> {raw!r} is not a number", index) from None
        if not math.isfinite(value):
            raise self.error(elem.find(child), f"<{child}> {raw!r} is not finite", index)
        return value

    def optional_int(self, elem: ET.Element, child: str, default: int, index: int | None = None) -> int:
        """``elem/child`` as an int (``"1.0"`` accepted), ``default`` when absent or empty."""
        node = elem.find(child)
        if node is None or not (node.text or "").strip():
            return default
        value = self.number(elem, child, index)
        if not value.is_integer():
            raise self.error(node, f"<{child}> {node.text.strip()!r} is not an integer", index)
        return int(value)


def check_class(xml: LabelXml, elem: ET.Element, name: str, class_names, index: int) -> None:
    """Raise at ``elem`` when ``class_names`` is given and ``name`` is not in it."""
    if class_names is not None and name not in set(class_names):
        raise xml.error(elem, f"unknown class {name!r}; this dataset's classes are {list(class_names)}", index)


def read_dior_xml(path, image_path=None, class_names=None) -> ImageRecord:
    """Read one DIOR-R oriented-box XML file.

    Args:
        path: ``Annotations/Oriented Bounding Boxes/<id>.xml``.
        image_path: the matching image, stored in the record (not opened).
        class_names: if given (e.g. ``DIOR_R.names``), every normalised class name must be in it.

    Returns:
        ImageRecord: ``polygons`` (N, 8) in corner order left-top, right-top, right-bottom, left-bottom;
        ``difficulty`` from ``<difficult>`` (0 when absent); ``extra`` keys ``imagesource`` ("DIOR-R") and,
        when the file has ``<size>``, ``width`` and ``height``.

    Raises:
        LabelFormatError: malformed XML, root not ``<annotation>``, an object without ``<name>`` or
            ``<robndbox>`` or one of its eight corners, a non-numeric corner, or an unknown class.
    """
    xml = LabelXml(path)
    if xml.root.tag != "annotation":
        raise xml.error(xml.root, f"root element is <{xml.root.tag}>, expected <annotation>")
    polys, classes, diffs = [], [], []
    for index, obj in enumerate(xml.root.iter("object"), start=1):
        name = normalize_dior_name(xml.text(obj, "name", index))
        check_class(xml, obj.find("name"), name, class_names, index)
        box = obj.find("robndbox")
        if box is None:
            raise xml.error(obj, "missing <robndbox> (is this the horizontal-box annotation folder?)", index)
        polys.append([xml.number(box, corner, index) for corner in DIOR_CORNERS])
        classes.append(name)
        diffs.append(xml.optional_int(obj, "difficult", 0, index))
    extra = {"imagesource": "DIOR-R"}
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


def read_split_list(list_file) -> list[tuple[int, str]]:
    """Image ids of a VOC-style ``ImageSets/Main/<split>.txt`` as ``(line, id)``; blank lines skipped."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"split list {list_file} does not exist")
    return [(n, line.split()[0]) for n, line in enumerate(list_file.read_text().splitlines(), start=1)
            if line.strip()]


def read_dior_split(root, split: str, class_names=DIOR_R.names, image_dir=None, list_file=None,
                    require_images: bool = True) -> list[ImageRecord]:
    """Read one DIOR-R split in list order.

    Args:
        root: the DIOR(-R) folder holding ``Annotations/``, ``ImageSets/`` and the image folders.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"trainval"`` (``trainval.txt`` if present, else
            ``train.txt`` followed by ``val.txt``, like mmrotate's ConcatDataset).
        class_names: allowed classes (default the 20 DIOR-R classes); ``None`` accepts any name.
        image_dir: overrides ``JPEGImages-test`` (test) / ``JPEGImages-trainval`` (other splits).
        list_file: overrides ``ImageSets/Main/<split>.txt``.
        require_images: a listed id without an image file is an error (else ``image_path`` is ``None``).

    Raises:
        ValueError for an unknown split; FileNotFoundError for a missing list, folder, or image;
        LabelFormatError for a listed id without an XML file (naming the list file and line) or a bad XML.
    """
    root = Path(root)
    if split not in ("train", "val", "test", "trainval"):
        raise ValueError(f"DIOR-R split must be train, val, test or trainval, got {split!r}")
    main = root / "ImageSets" / "Main"
    if list_file is not None:
        entries = [(Path(list_file), n, i) for n, i in read_split_list(list_file)]
    elif split == "trainval" and not (main / "trainval.txt").is_file():
        entries = [(main / f"{s}.txt", n, i) for s in ("train", "val") for n, i in read_split_list(main / f"{s}.txt")]
    else:
        entries = [(main / f"{split}.txt", n, i) for n, i in read_split_list(main / f"{split}.txt")]
    if image_dir is None:
        image_dir = root / ("JPEGImages-test" if split == "test" else "JPEGImages-trainval")
    image_dir = Path(image_dir)
    if require_images and not image_dir.is_dir():
        raise FileNotFoundError(f"DIOR-R image folder {image_dir} does not exist")
    ann_dir = root / DIOR_ANNOTATION_SUBDIR
    if not ann_dir.is_dir():
        raise FileNotFoundError(f"DIOR-R annotation folder {ann_dir} does not exist (the name has spaces: "
                                f"'{DIOR_ANNOTATION_SUBDIR}')")
    records = []
    for list_path, lineno, image_id in entries:
        xml_path = ann_dir / f"{image_id}.xml"
        if not xml_path.is_file():
            raise LabelFormatError(list_path, f"image id {image_id!r} has no annotation {xml_path}", lineno)
        image = find_image(image_dir, image_id) if image_dir.is_dir() else None
        if image is None and require_images:
            raise FileNotFoundError(f"{list_path}:{lineno}: no image for id {image_id!r} in {image_dir}")
        records.append(read_dior_xml(xml_path, image, class_names))
    return records
