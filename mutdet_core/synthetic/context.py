"""What every placement step of one scene shares: size, scale, sun, ground, placed objects.

``SceneContext.place`` is the single gate every object passes: it keeps labelled objects fully inside
the image, on an allowed surface, and apart from everything already placed (exact oriented-rectangle
test), and it decides whether the object is labelled at all (the dataset's class list).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .layout import Occupancy, SceneObject, inside_image, rect_corners, sample_points
from .terrain import OUTSIDE, Ground

# Classes that are part of the ground plan: when a dataset leaves them out they are still drawn (a port
# without piers would not be a port), only not labelled. Other classes are simply not generated.
STRUCTURES = ("harbor", "bridge")

MIN_SIDE_PX = 2.0  # labelled objects narrower than this are not placed (SPEC: boxes under 2 px are dropped)


def _allowed(surfaces, outside: bool = False) -> np.ndarray:
    """Lookup table ``(256,)`` bool: which surface codes are allowed (``OUTSIDE`` when ``outside``)."""
    table = np.zeros(256, bool)
    table[list(surfaces)] = True
    table[OUTSIDE] = outside
    return table


@dataclass
class SceneContext:
    """State of one scene under construction.

    Attributes:
        rng: the scene's only source of randomness.
        width, height: image size in pixels.
        gsd: ground sample distance, metres per pixel.
        classes: labelled classes of the dataset.
        grid_angle: dominant orientation of man-made layout (roads, lots), radians.
        sun: ``(2,)`` unit vector towards the sun in image coordinates (shadows fall along ``-sun``).
        shadow_per_metre: shadow length in metres per metre of object height (1 / tan(sun elevation)).
        ground: the scene's ``Ground``.
        objects: everything placed, in placement order.
        features: ground-plan features later steps may build on (``"coast"``, ``"river"``).
    """

    rng: np.random.Generator
    width: int
    height: int
    gsd: float
    classes: frozenset
    grid_angle: float
    sun: np.ndarray
    shadow_per_metre: float
    ground: Ground
    objects: list = field(default_factory=list)
    occupancy: Occupancy = field(default_factory=Occupancy)
    zones: Occupancy = field(default_factory=Occupancy)
    features: dict = field(default_factory=dict)

    @property
    def ppm(self) -> float:
        """Pixels per metre."""
        return 1.0 / self.gsd

    def px(self, metres):
        return np.asarray(metres) / self.gsd if np.ndim(metres) else metres / self.gsd

    def wants(self, label: str) -> bool:
        """Whether objects of ``label`` should be generated (labelled or as structure)."""
        return label in self.classes or label in STRUCTURES

    def place(self, kind: str, label: str | None, cx: float, cy: float, w: float, h: float, angle: float, *,
              height_m: float = 0.0, shadow: str = "swept", style: dict | None = None,
              surfaces=None, margin: float = 1.0, register: bool = True) -> SceneObject | None:
        """Add an object if it fits; returns it, or ``None`` when rejected.

        Args:
            kind: renderer name; label: DOTA class or ``None`` (scenery).
            cx, cy, w, h, angle: oriented rectangle in pixels / radians (see ``layout``).
            height_m: height above ground in metres (shadow length).
            surfaces: allowed surface codes under the object (sampled on a grid), ``None`` for any.
            margin: minimum gap in pixels to every registered object.
            register: add to the occupancy, so later objects keep clear (trees are not registered:
                crowns may overlap each other).
        """
        if label is not None and label not in self.classes:
            if label not in STRUCTURES:
                return None
            label = None
        if label is not None and min(w, h) < MIN_SIDE_PX:
            return None
        corners = rect_corners(cx, cy, w, h, angle)
        if label is not None:
            if not inside_image(corners, self.width, self.height):
                return None
        elif not (0 <= cx < self.width and 0 <= cy < self.height):
            return None
        if surfaces is not None:
            n = int(np.clip(max(w, h) / 6, 3, 7))
            codes = self.ground.surface_at(sample_points(cx, cy, w * 0.96, h * 0.96, angle, n))
            if not _allowed(surfaces, outside=True)[codes].all():
                return None
        if not self.occupancy.fits(corners, margin):
            return None
        style = dict(style or {})
        style.setdefault("ppm", self.ppm)
        style.setdefault("seed", int(self.rng.integers(2 ** 31)))
        obj = SceneObject(kind, label, float(cx), float(cy), float(w), float(h), float(angle),
                          elevation=height_m * self.ppm * self.shadow_per_metre, shadow=shadow, style=style)
        self.objects.append(obj)
        if register:
            self.occupancy.add(corners)
        return obj

    def find_zone(self, w: float, h: float, angle: float, surfaces, tries: int = 60, margin: float = 4.0,
                  centre_box=None):
        """A free spot for a ``w x h`` zone at ``angle``: ``(cx, cy)`` or ``None``.

        The zone must lie inside the image, on ``surfaces``, clear of other zones and of objects.
        ``centre_box`` ``(x0, y0, x1, y1)`` restricts where the centre may be drawn.
        """
        x0, y0, x1, y1 = centre_box or (0, 0, self.width, self.height)
        for _ in range(tries):
            cx, cy = self.rng.uniform(x0, x1), self.rng.uniform(y0, y1)
            corners = rect_corners(cx, cy, w, h, angle)
            if not inside_image(corners, self.width, self.height, border=2):
                continue
            n = int(np.clip(max(w, h) / 20, 4, 12))
            if not _allowed(surfaces)[self.ground.surface_at(sample_points(cx, cy, w, h, angle, n))].all():
                continue
            if self.zones.fits(corners, margin) and self.occupancy.fits(corners, margin):
                self.zones.add(corners)
                return cx, cy
        return None

    def labels(self) -> list[str]:
        return [o.label for o in self.objects if o.label is not None]
