"""The one in-memory form every dataset reader produces.

Every reader (DOTA txt, DIOR-R XML, FAIR1M XML, HRRSD VOC XML, OHD-SJTU txt) returns ``ImageRecord``
objects, so tiling, pseudo-labelling, training and evaluation never care where labels came from.

Polygons are float64 ``(N, 8)`` arrays ``x1 y1 x2 y2 x3 y3 x4 y4`` in image pixels (x right, y down),
in the point order the source file gives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class LabelFormatError(ValueError):
    """A label file that cannot be read; the message names the file and, where known, the line."""

    def __init__(self, path, problem: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path = Path(path)
        self.line = line
        self.problem = problem


@dataclass
class ImageRecord:
    """One image and its oriented objects.

    Attributes:
        image_id: file stem, e.g. ``"P0706"``.
        image_path: path of the image file, or ``None`` when only labels are known.
        polygons: ``(N, 8)`` float64 corner coordinates.
        classes: ``N`` class names as written in the source (dataset class lists map them to ids).
        difficulty: ``(N,)`` int64; 0 easy, 1 difficult, 2 truncated by a tile border.
        gsd: ground sample distance in metres per pixel, ``None`` when unknown (``gsd:null``).
        head_points: ``(N, 2)`` object head points (OHD-SJTU), else ``None``.
        label_path: the label file this record came from, for error messages.
    """

    image_id: str
    image_path: Path | None
    polygons: np.ndarray
    classes: list[str]
    difficulty: np.ndarray
    gsd: float | None = None
    head_points: np.ndarray | None = None
    label_path: Path | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.polygons = np.asarray(self.polygons, dtype=np.float64).reshape(-1, 8)
        self.difficulty = np.asarray(self.difficulty, dtype=np.int64).reshape(-1)
        self.classes = list(self.classes)
        n = len(self.polygons)
        if len(self.classes) != n or len(self.difficulty) != n:
            raise ValueError(
                f"{self.image_id}: {n} polygons but {len(self.classes)} classes and "
                f"{len(self.difficulty)} difficulty flags"
            )
        if self.head_points is not None:
            self.head_points = np.asarray(self.head_points, dtype=np.float64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.polygons)

    def subset(self, keep) -> "ImageRecord":
        """A record with only the objects selected by the boolean mask or index array ``keep``."""
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return ImageRecord(
            image_id=self.image_id,
            image_path=self.image_path,
            polygons=self.polygons[idx],
            classes=[self.classes[i] for i in idx],
            difficulty=self.difficulty[idx],
            gsd=self.gsd,
            head_points=None if self.head_points is None else self.head_points[idx],
            label_path=self.label_path,
            extra=dict(self.extra),
        )
