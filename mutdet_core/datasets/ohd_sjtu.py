"""OHD-SJTU ``rotation_txt`` reader: oriented boxes with an object head point.

One object per line (format verified from ``OHDet_Tensorflow/eval_devkit/OHD_SJTU_evaluation_OHD.py``)::

    x1 y1 x2 y2 x3 y3 x4 y4 head_x head_y class [difficult]      11 or 12 tokens

The head point fills ``ImageRecord.head_points`` (N, 2). Blank lines are skipped; DOTA-style
``imagesource:``/``gsd:`` header lines are accepted (``gsd`` is read) so converted files work too. The same
class names serve OHD-SJTU-S (``classes.OHD_SJTU_S``) and -L (``classes.OHD_SJTU_L``): pass the list to check.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .dota import _parse_header, read_image_label_folder
from .records import ImageRecord, LabelFormatError


def read_ohd_sjtu_txt(path, image_path=None, class_names=None) -> ImageRecord:
    """Read one OHD-SJTU label file.

    Returns:
        ImageRecord with ``polygons`` (N, 8), ``head_points`` (N, 2), ``difficulty`` (token 12, else 0),
        ``extra["imagesource"] = "OHD-SJTU"`` unless the file has an ``imagesource:`` header.

    Raises:
        LabelFormatError naming the line: a token count other than 11 or 12, a non-numeric or non-finite
        coordinate or head point, a non-integer difficulty, or an unknown class (when ``class_names``).
    """
    path = Path(path)
    known = set(class_names) if class_names is not None else None
    polys, heads, classes, diffs = [], [], [], []
    gsd, extra = None, {"imagesource": "OHD-SJTU"}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise LabelFormatError(path, f"not UTF-8 text ({err.reason})") from None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        header = _parse_header(line)
        if header is not None:
            if header[0] == "imagesource":
                extra["imagesource"] = header[1]
            elif header[0] == "gsd":
                try:
                    gsd = float(header[1])
                    gsd = gsd if math.isfinite(gsd) else None
                except ValueError:
                    gsd = None
            continue
        tokens = line.split()
        if len(tokens) not in (11, 12):
            raise LabelFormatError(
                path, f"expected 'x1 y1 ... x4 y4 head_x head_y class [difficult]' (11 or 12 tokens), "
                      f"got {len(tokens)}", lineno)
        try:
            values = [float(t) for t in tokens[:10]]
        except ValueError:
            raise LabelFormatError(path, f"non-numeric coordinate or head point in {tokens[:10]}", lineno) from None
        if not all(math.isfinite(v) for v in values):
            raise LabelFormatError(path, "non-finite coordinate or head point", lineno)
        name = tokens[10]
        if known is not None and name not in known:
            raise LabelFormatError(path, f"unknown class {name!r}; this dataset's classes are {sorted(known)}",
                                   lineno)
        difficult = 0
        if len(tokens) == 12:
            try:
                difficult = int(tokens[11])
            except ValueError:
                raise LabelFormatError(path, f"difficulty {tokens[11]!r} is not an integer", lineno) from None
        polys.append(values[:8])
        heads.append(values[8:10])
        classes.append(name)
        diffs.append(difficult)
    return ImageRecord(
        image_id=path.stem,
        image_path=None if image_path is None else Path(image_path),
        polygons=np.asarray(polys, dtype=np.float64).reshape(-1, 8),
        classes=classes,
        difficulty=np.asarray(diffs, dtype=np.int64),
        gsd=gsd,
        head_points=np.asarray(heads, dtype=np.float64).reshape(-1, 2),
        label_path=path,
        extra=extra,
    )


def read_ohd_sjtu_folder(folder, label_dir=None, class_names=None, require_labels=True) -> list[ImageRecord]:
    """Read OHD-SJTU images with their ``rotation_txt`` labels, sorted by id.

    Either ``folder`` is a split folder holding ``images/`` and ``rotation_txt/`` (the image folder name is
    an assumption: pass ``label_dir`` when yours differs), or ``folder`` is the image folder and
    ``label_dir`` the label folder. Pairing rules are those of ``dota.read_image_label_folder``; images
    without labels get empty records (``head_points`` ``None``) when not ``require_labels``.
    """
    folder = Path(folder)
    image_dir, label_dir = (folder / "images", folder / "rotation_txt") if label_dir is None else (folder, label_dir)
    return read_image_label_folder(
        image_dir, label_dir, lambda label, image: read_ohd_sjtu_txt(label, image, class_names),
        ".txt", require_labels,
    )
