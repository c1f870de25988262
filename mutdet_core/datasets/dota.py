"""DOTA v1.0 label txt: reader, label writer, Task1 result reader and writer.

Label file (``labelTxt/<id>.txt``)::

    imagesource:GoogleEarth          optional header
    gsd:0.146343                     optional header; ``gsd:null`` means unknown
    x1 y1 x2 y2 x3 y3 x4 y4 class difficult     one object per line (``difficult`` may be missing: 0)

Split annotation files (mmrotate ``annfiles``) are the same without headers. Blank lines are skipped.
Any other line is an error that names the file and the line: the mmrotate loader silently drops short
lines, which hides broken labels; we would rather stop before hours of training on half the objects.
Out-of-range values (a difficulty other than 0/1/2, a coordinate beyond ``MAX_ABS_COORD``) are errors too.
A self-intersecting quadrilateral (a "bow-tie", corners out of order) is repaired with a warning: its
corners are put in clockwise order around their centroid (what mmrotate effectively does, as it turns
every polygon into ``cv2.minAreaRect`` of its points), since shapely cannot intersect it with a tile.
"""
from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np

from .records import ImageRecord, LabelFormatError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
DIFFICULTIES = (0, 1, 2)  # easy, difficult, cut by a tile border (stored as int8 in tile stores)
# No image is a million pixels wide; a larger coordinate is a typo (1e300) that would overflow float32
# (tiling uses float32 as mmrotate does) and print a cascade of numpy warnings instead of one message.
MAX_ABS_COORD = 1e6

log = logging.getLogger(__name__)


def _parse_header(line: str) -> tuple[str, str] | None:
    key, sep, value = line.partition(":")
    if sep and key.strip() in ("imagesource", "gsd", "acquisition dates", "acquisition_dates"):
        return key.strip(), value.strip()
    return None


def read_dota_txt(label_path, image_path=None, class_names=None) -> ImageRecord:
    """Read one DOTA label file.

    Args:
        label_path: the ``.txt`` file.
        image_path: the matching image, stored in the record (not opened here).
        class_names: if given, every class must be in it; an unknown name is an error naming the line.

    Returns:
        ImageRecord with ``gsd`` from the header (``None`` for ``gsd:null`` or no header).

    Raises:
        LabelFormatError: fewer than 9 tokens, more than 10, non-numeric or non-finite coordinates or one
            beyond ``MAX_ABS_COORD``, a difficulty that is not 0, 1 or 2, or an unknown class name.
    """
    label_path = Path(label_path)
    known = set(class_names) if class_names is not None else None
    polys, classes, diffs, linenos = [], [], [], []
    gsd = None
    extra = {}
    try:
        text = label_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise LabelFormatError(label_path, f"not UTF-8 text ({err.reason})") from None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        header = _parse_header(line)
        if header is not None:
            if header[0] == "imagesource":
                extra["imagesource"] = header[1]  # kept so write_dota_txt can write it back
            if header[0] == "gsd":
                try:
                    gsd = float(header[1])
                    gsd = gsd if math.isfinite(gsd) else None
                except ValueError:
                    gsd = None  # "gsd:null" in the official files
            continue
        tokens = line.split()
        if len(tokens) < 9:
            raise LabelFormatError(
                label_path, f"expected 'x1 y1 ... x4 y4 class [difficult]', got {len(tokens)} tokens", lineno
            )
        if len(tokens) > 10:
            raise LabelFormatError(label_path, f"expected 9 or 10 tokens, got {len(tokens)}", lineno)
        try:
            coords = [float(t) for t in tokens[:8]]
        except ValueError:
            raise LabelFormatError(label_path, f"non-numeric coordinate in {tokens[:8]}", lineno) from None
        if not all(math.isfinite(c) for c in coords):
            raise LabelFormatError(label_path, "non-finite coordinate", lineno)
        if max(abs(c) for c in coords) > MAX_ABS_COORD:
            raise LabelFormatError(label_path, f"coordinate {max(coords, key=abs):g} is beyond ±{MAX_ABS_COORD:g} px; "
                                   "fix or delete this line", lineno)
        name = tokens[8]
        if known is not None and name not in known:
            raise LabelFormatError(
                label_path, f"unknown class {name!r}; this dataset's classes are {sorted(known)}", lineno
            )
        difficult = 0
        if len(tokens) == 10:
            try:
                difficult = int(tokens[9])
            except ValueError:
                raise LabelFormatError(label_path, f"difficulty {tokens[9]!r} is not an integer", lineno) from None
            if difficult not in DIFFICULTIES:
                raise LabelFormatError(label_path, f"difficulty {difficult} is not 0 (easy), 1 (difficult) or 2 "
                                       "(cut by a tile border); fix this line", lineno)
        polys.append(coords)
        linenos.append(lineno)
        classes.append(name)
        diffs.append(difficult)
    polygons, fixed = untangle_quads(np.asarray(polys, dtype=np.float64).reshape(-1, 8))
    if fixed.any():
        lines = ", ".join(str(linenos[i]) for i in np.flatnonzero(fixed))
        log.warning("%s: line%s %s: self-intersecting polygon (corners out of order); corners reordered clockwise "
                    "around their centroid, check these labels", label_path, "s" if fixed.sum() > 1 else "", lines)
    return ImageRecord(
        image_id=label_path.stem,
        image_path=None if image_path is None else Path(image_path),
        polygons=polygons,
        classes=classes,
        difficulty=np.asarray(diffs, dtype=np.int64),
        gsd=gsd,
        label_path=label_path,
        extra=extra,
    )


def find_image(image_dir, image_id: str) -> Path | None:
    """The image file for ``image_id`` in ``image_dir`` (any known extension), or ``None``."""
    image_dir = Path(image_dir)
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        candidate = image_dir / f"{image_id}{ext}"
        if candidate.is_file():
            return candidate
    return None


def read_image_label_folder(image_dir, label_dir, read_label, label_suffix=".txt",
                            require_labels=True) -> list[ImageRecord]:
    """Pair every image in ``image_dir`` with ``label_dir/<id><label_suffix>`` and read it, sorted by id.

    ``read_label(label_path, image_path)`` returns the record (each dataset passes its own reader). An image
    without a label file is an error when ``require_labels`` (training data), otherwise it gets an empty
    record (test data, or unlabelled pre-training imagery). A label file without an image is skipped: the
    official DOTA release ships such files. ``label_dir=None`` means no labels at all. A folder without
    any image is a ``FileNotFoundError`` that says what it holds instead.
    """
    image_dir, label_dir = Path(image_dir), Path(label_dir) if label_dir is not None else None
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist")
    if label_dir is not None and not label_dir.is_dir():
        raise FileNotFoundError(f"label folder {label_dir} does not exist")
    files = [p for p in image_dir.iterdir() if p.is_file()]
    images = sorted(p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        # Else tiling writes a "complete" store with 0 tiles and every later stage trains on nothing.
        found = sorted({p.suffix.lower() or "(no extension)" for p in files})
        held = f"only {len(files)} other files ({', '.join(found)})" if files else "nothing"
        raise FileNotFoundError(f"image folder {image_dir} has no images ({' '.join(IMAGE_EXTENSIONS)}), it holds "
                                f"{held}; point to the folder with the images")
    records = []
    for image in images:
        label = None if label_dir is None else label_dir / f"{image.stem}{label_suffix}"
        if label is not None and label.is_file():
            records.append(read_label(label, image))
        elif require_labels:
            raise LabelFormatError(label or image, f"image {image} has no label file")
        else:
            records.append(ImageRecord(image.stem, image, np.zeros((0, 8)), [], np.zeros(0, np.int64)))
    return records


def read_dota_folder(image_dir, label_dir, class_names=None, require_labels=True) -> list[ImageRecord]:
    """Read every image of a DOTA-layout dataset (``images/`` + ``labelTxt/``), sorted by image id.

    An image without a label file is an error when ``require_labels`` (training data), otherwise it gets
    an empty record (test data, or unlabelled pre-training imagery). A label file without an image is
    skipped: the official DOTA release ships such files.
    """
    return read_image_label_folder(
        image_dir, label_dir, lambda label, image: read_dota_txt(label, image, class_names),
        ".txt", require_labels,
    )


def format_coord(value: float) -> str:
    """Coordinates as the DOTA tools print them: integers as ``1054.0``, other values as ``str`` of the
    float32 value (shortest text that reads back to that float32: ``12.3``), which is what mmrotate's
    splitter writes with ``map(str, float32_row)``. (``repr(float(np.float32(v)))`` would print the float64
    expansion ``12.300000190734863`` instead.)"""
    v = float(value)
    return str(int(v)) + ".0" if v.is_integer() else str(np.float32(v))


def write_dota_txt(record: ImageRecord, path, header: bool = True) -> None:
    """Write a DOTA label file. ``header`` adds ``imagesource``/``gsd`` lines like the originals."""
    path = Path(path)
    for name in record.classes:
        # A space would split the name into two tokens and make the file unreadable (FAIR1M has
        # "Small Car"); records_to_dota_folder renames such classes with dota_class_name first.
        if not name or any(ch.isspace() for ch in name):
            raise ValueError(f"{path}: class name {name!r} cannot be written to a DOTA file (empty or has "
                             "whitespace); rename it first, e.g. with dota_class_name()")
    lines = []
    if header:
        lines.append("imagesource:" + str(record.extra.get("imagesource", "synthetic")))
        lines.append("gsd:" + ("null" if record.gsd is None else repr(float(record.gsd))))
    for poly, name, diff in zip(record.polygons, record.classes, record.difficulty):
        lines.append(" ".join(format_coord(c) for c in poly) + f" {name} {int(diff)}")
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")


def read_task1_folder(folder, class_names=None) -> dict[str, list[tuple[str, float, np.ndarray]]]:
    """Read ``Task1_<class>.txt`` result files: ``{class: [(image_id, score, polygon(8,)), ...]}``.

    Malformed lines raise ``LabelFormatError`` naming the file and line.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"detection folder {folder} does not exist")
    results: dict[str, list] = {}
    files = sorted(folder.glob("Task1_*.txt"))
    for path in files:
        name = path.stem[len("Task1_"):]
        if class_names is not None and name not in class_names:
            raise LabelFormatError(path, f"unknown class {name!r} in the file name")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise LabelFormatError(path, f"not UTF-8 text ({err.reason} at byte {err.start}); re-save it as "
                                   "UTF-8 or ASCII") from None
        dets = []
        for lineno, raw in enumerate(text.splitlines(), start=1):
            tokens = raw.split()
            if not tokens:
                continue
            if len(tokens) != 10:
                raise LabelFormatError(path, f"expected 'image score x1 y1 ... x4 y4', got {len(tokens)} tokens", lineno)
            try:
                score = float(tokens[1])
                poly = np.array([float(t) for t in tokens[2:]], dtype=np.float64)
            except ValueError:
                raise LabelFormatError(path, "non-numeric score or coordinate", lineno) from None
            if not (math.isfinite(score) and np.isfinite(poly).all()):
                raise LabelFormatError(path, "non-finite score or coordinate", lineno)
            if np.abs(poly).max() > MAX_ABS_COORD:
                raise LabelFormatError(path, f"coordinate {poly[np.abs(poly).argmax()]:g} is beyond "
                                       f"±{MAX_ABS_COORD:g} px; fix or delete this line", lineno)
            dets.append((tokens[0], score, poly))
        results[name] = dets
    return results


def write_task1_folder(detections: dict, folder, class_names) -> list[Path]:
    """Write ``Task1_<class>.txt`` for every class in ``class_names`` (empty files included, as the
    evaluation server expects one file per class). ``detections``: ``{class: [(image_id, score, poly)]}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in class_names:
        path = folder / f"Task1_{name}.txt"
        with path.open("w") as f:
            for image_id, score, poly in detections.get(name, []):
                coords = " ".join(f"{float(c):.2f}" for c in poly)
                f.write(f"{image_id} {float(score):.6f} {coords}\n")
        written.append(path)
    return written


def dota_class_name(name: str) -> str:
    """A class name usable in a DOTA label file: whitespace runs become ``-`` (FAIR1M ``"Small Car"`` ->
    ``"Small-Car"``, HRRSD ``"T junction"`` -> ``"T-junction"``). ``ClassList.canonical`` maps it back."""
    return "-".join(name.split())


def records_to_dota_folder(records, out_dir, link: str = "symlink", header: bool = True) -> list[Path]:
    """Write records of any dataset in DOTA layout: ``out_dir/images/<id><ext>`` + ``out_dir/labelTxt/<id>.txt``.

    Images keep their own format and extension (the tiler reads any of ``IMAGE_EXTENSIONS``); ``link`` is
    ``"symlink"`` (absolute link, no disk cost), ``"copy"``, or ``"none"`` (labels only). A record without an
    image writes only its label file, as DOTA itself ships some. Class names with whitespace are renamed with
    ``dota_class_name``. Existing files of the same name are replaced.

    Returns:
        the label files written, in record order.

    Raises:
        ValueError: two records share an image id (one would silently overwrite the other) or ``link`` is
            unknown. FileNotFoundError: a record names an image that does not exist.
    """
    if link not in ("symlink", "copy", "none"):
        raise ValueError(f"link must be 'symlink', 'copy' or 'none', got {link!r}")
    records = list(records)
    seen: dict[str, ImageRecord] = {}
    for rec in records:
        if rec.image_id in seen:
            raise ValueError(f"image id {rec.image_id!r} occurs twice ({seen[rec.image_id].label_path} and "
                             f"{rec.label_path}); DOTA layout needs unique file names")
        seen[rec.image_id] = rec
        if link != "none" and rec.image_path is not None and not Path(rec.image_path).is_file():
            raise FileNotFoundError(f"image {rec.image_path} of record {rec.image_id!r} does not exist")
    out_dir = Path(out_dir)
    image_dir, label_dir = out_dir / "images", out_dir / "labelTxt"
    label_dir.mkdir(parents=True, exist_ok=True)
    if link != "none":
        image_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for rec in records:
        renamed = ImageRecord(
            rec.image_id, rec.image_path, rec.polygons, [dota_class_name(c) for c in rec.classes],
            rec.difficulty, rec.gsd, rec.head_points, rec.label_path, dict(rec.extra),
        )
        label_path = label_dir / f"{rec.image_id}.txt"
        write_dota_txt(renamed, label_path, header=header)
        written.append(label_path)
        if link == "none" or rec.image_path is None:
            continue
        source = Path(rec.image_path).resolve()
        target = image_dir / f"{rec.image_id}{source.suffix}"
        if target.is_symlink() or target.exists():
            target.unlink()
        if link == "symlink":
            target.symlink_to(source)
        else:
            shutil.copy2(source, target)
    return written


def polygon_areas(polygons) -> np.ndarray:
    """Absolute shoelace areas of ``(N, 8)`` polygons, ``(N,)`` float64 (NaN coordinates give NaN)."""
    p = np.asarray(polygons, dtype=np.float64).reshape(-1, 4, 2)
    x, y = p[..., 0], p[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))


def _crosses(a, b, c, d) -> np.ndarray:
    """Segments ab and cd (arrays of points ``(..., 2)``) cross at a point inside both; touching is not crossing."""
    def side(p, q, r):
        return np.sign((q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0]))
    return (side(a, b, c) * side(a, b, d) < 0) & (side(c, d, a) * side(c, d, b) < 0)


def untangle_quads(polygons) -> tuple[np.ndarray, np.ndarray]:
    """Repair self-intersecting quadrilaterals ("bow-ties", e.g. ``10 10 100 100 100 10 10 100``).

    Their corners are put in order of angle around the centroid, first corner kept first, so they run
    clockwise on screen (y down) like DOTA's. Other polygons, degenerate ones included, are untouched.
    Returns ``(polygons (N, 8) float64, repaired (N,) bool)``.
    """
    p = np.asarray(polygons, dtype=np.float64).reshape(-1, 4, 2)
    bad = _crosses(p[:, 0], p[:, 1], p[:, 2], p[:, 3]) | _crosses(p[:, 1], p[:, 2], p[:, 3], p[:, 0])
    if bad.any():
        q = p[bad]
        d = q - q.mean(axis=1, keepdims=True)
        angle = np.arctan2(d[..., 1], d[..., 0])
        order = np.argsort((angle - angle[:, :1]) % (2 * np.pi), axis=1, kind="stable")
        p = p.copy()
        p[bad] = np.take_along_axis(q, order[..., None], axis=1)
    return p.reshape(-1, 8), bad


def drop_degenerate(record: ImageRecord, min_area: float = 0.0) -> tuple[ImageRecord, int]:
    """Remove objects whose polygon area is ``<= min_area`` px² (default: exactly zero, e.g. the collapsed
    boxes on tile borders such as ``1 187 1 187 1 219 1 219``).

    Readers keep such objects so a record mirrors its file and the tiler can drop them the way mmrotate does;
    this is for callers that want clean records. Returns ``(record, number_dropped)``; the record is a new
    object only when something was dropped.
    """
    keep = polygon_areas(record.polygons) > min_area  # NaN area compares False: dropped too
    dropped = int(len(keep) - keep.sum())
    return (record.subset(keep) if dropped else record), dropped
