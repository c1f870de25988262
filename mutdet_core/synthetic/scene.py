"""One synthetic aerial scene: a theme's ground plan, its objects, shadows and sensor effects.

A scene has a theme, which fixes what dominates it, the way a DOTA image is an airport, a port or a
suburb: ``airport`` (planes on aprons), ``port`` (a quay with marinas, jetties, ships, tank farms),
``river`` (bridges, ships under way), ``urban`` (streets, parking lots, tennis courts, houses) and
``industrial`` (tank farms, truck yards, warehouses). Each theme always tries to place its key classes
and falls back to simpler placements when the image is too small for the usual arrangement, so that a
dataset of a handful of images contains every class.

Rendering order: ground, then every object's shadow (one shadow map, so overlapping shadows do not
darken twice), then the objects, then per-image colour, haze, blur and noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..datasets.records import ImageRecord
from . import fillers, waterfront, zones
from .context import SceneContext
from .layout import SceneObject, rect_corners
from .objects import draw_sprite
from .sprite import accumulate_shadow, composite, rasterize
from .terrain import LAND, PAVED, ROAD, Ground

THEMES = ("airport", "port", "river", "urban", "industrial")
# Classes a theme guarantees (when the dataset has them and the image has room).
THEME_CLASSES = {
    "airport": ("plane", "small-vehicle"),
    "port": ("harbor", "ship", "storage-tank", "large-vehicle"),
    "river": ("bridge", "ship", "small-vehicle"),
    "urban": ("small-vehicle", "tennis-court", "large-vehicle"),
    "industrial": ("storage-tank", "large-vehicle", "small-vehicle"),
}
DIFFICULT_MAX_PX = 8.0  # objects whose longer side is shorter than this are marked difficult (1)


@dataclass
class Scene:
    """A rendered scene.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        objects: every placed ``SceneObject``, labelled or not, in placement order.
        gsd: metres per pixel; theme: one of ``THEMES``; sun_azimuth_deg: direction towards the sun
            (image x axis = 0, clockwise on screen).
        surface: ``(H, W)`` uint8 ground codes (``terrain.LAND``, ``WATER``, ``ROAD``, ``PAVED``).
    """

    image: np.ndarray
    objects: list
    gsd: float
    theme: str
    sun_azimuth_deg: float
    surface: np.ndarray

    @property
    def labelled(self) -> list[SceneObject]:
        return [o for o in self.objects if o.label is not None]

    def record(self, image_id: str, image_path=None) -> ImageRecord:
        """The labels as an ``ImageRecord`` (polygons TL, TR, BR, BL of each object frame)."""
        objs = self.labelled
        polys = np.array([o.polygon() for o in objs]).reshape(-1, 8)
        diff = np.array([int(max(o.w, o.h) < DIFFICULT_MAX_PX) for o in objs], np.int64)
        return ImageRecord(image_id, image_path, polys, [o.label for o in objs], diff, gsd=self.gsd,
                           extra={"imagesource": "synthetic", "theme": self.theme})


# ------------------------------------------------------------------------------------------ themes
def _n(ctx: SceneContext, lo: int, hi: int, linear: bool = False) -> int:
    """A count drawn in ``[lo, hi)`` for a 1-megapixel image, scaled to this image's area (or side,
    ``linear``) so that density, not count, is what a theme fixes; at least 1 when ``lo`` is."""
    scale = np.clip(ctx.width * ctx.height / 1e6, 0.3, 4.0)
    scale = np.sqrt(scale) if linear else scale
    n = int(np.floor(ctx.rng.integers(lo, hi) * scale + ctx.rng.random()))
    return max(n, min(lo, 1))


def _road_grid(ctx: SceneContext, per_direction: tuple[int, int], width_m=(7.0, 16.0)) -> list:
    """Straight roads along the grid directions, avoiding water. Returns ``[(p0, p1, width, lanes)]``."""
    rng = ctx.rng
    roads = []
    far = 2.0 * max(ctx.width, ctx.height)
    centre = np.array([ctx.width / 2, ctx.height / 2])
    for k in range(2):
        a = ctx.grid_angle + k * np.pi / 2
        d, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        half = 0.5 * abs(ctx.width * n[0]) + 0.5 * abs(ctx.height * n[1])
        for _ in range(_n(ctx, per_direction[0], per_direction[1] + 1, linear=True)):
            c = centre + n * rng.uniform(-0.85, 0.85) * half
            lanes = int(rng.choice([2, 2, 2, 4]))
            width = ctx.px(rng.uniform(*width_m) * (1.6 if lanes == 4 else 1.0))
            p0, p1 = c - d * far, c + d * far
            if not waterfront.road_over_land(ctx, p0, p1, width):
                continue
            ctx.ground.road(p0, p1, width, lanes=lanes, ppm=ctx.ppm)
            roads.append((p0, p1, width, lanes))
    return roads


def _traffic(ctx: SceneContext, roads, density=(0.5, 4.0)) -> None:
    for p0, p1, width, lanes in roads:
        zones.road_traffic(ctx, p0, p1, width, lanes, ctx.rng.uniform(*density))


def _build_airport(ctx: SceneContext) -> None:
    rng = ctx.rng
    g = ctx.ground
    g.fill("grass")
    g.mix_land("dry_grass", rng.uniform(-0.5, 0.8))
    a = ctx.grid_angle
    d, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    far = 2.0 * max(ctx.width, ctx.height)
    half = 0.5 * abs(ctx.width * n[0]) + 0.5 * abs(ctx.height * n[1])
    side = rng.choice([-1, 1])
    c = np.array([ctx.width / 2, ctx.height / 2]) + n * side * rng.uniform(0.5, 0.95) * half
    runway = ctx.px(rng.uniform(40, 60))
    g.road(c - d * far, c + d * far, runway, lanes=2, kind="asphalt_old", ppm=ctx.ppm * 3)
    taxi_c = c - n * side * (runway / 2 + ctx.px(rng.uniform(60, 120)))
    taxi = ctx.px(rng.uniform(18, 25))
    g.paint_polygon(np.array([taxi_c - d * far + n * taxi / 2, taxi_c + d * far + n * taxi / 2,
                              taxi_c + d * far - n * taxi / 2, taxi_c - d * far - n * taxi / 2]), "asphalt", ROAD)
    g.strokes([(taxi_c - d * far, taxi_c + d * far)], ctx.px(0.3), (215, 185, 70), 0.9)
    for _ in range(_n(ctx, 1, 3)):
        zones.apron(ctx, angle=a + np.deg2rad(rng.normal(0, 0.5)))
    fillers.scatter_buildings(ctx, _n(ctx, 2, 7), {"warehouse": 3, "block": 1, "shed": 1})
    for _ in range(_n(ctx, 1, 3)):
        zones.parking_lot(ctx)
    if rng.random() < 0.3:
        zones.tank_farm(ctx)
    fillers.tree_clusters(ctx, _n(ctx, 2, 10))


def _build_port(ctx: SceneContext) -> None:
    rng = ctx.rng
    g = ctx.ground
    g.fill("urban")
    g.mix_land("grass", rng.uniform(0.3, 1.2))
    coast = waterfront.add_coast(ctx, rng.uniform(0.3, 0.55))
    ctx.features["coast"] = coast
    s0, s1 = coast.extent(ctx.width, ctx.height)
    mode = rng.choice(["marina", "jetty", "both"], p=[0.45, 0.2, 0.35])
    split = rng.uniform(s0 + 0.35 * (s1 - s0), s0 + 0.65 * (s1 - s0))
    if mode == "marina":
        waterfront.marina(ctx, coast, s0, s1)
    elif mode == "jetty":
        waterfront.jetties(ctx, coast, s0, s1)
    else:
        waterfront.marina(ctx, coast, s0, split)
        waterfront.jetties(ctx, coast, split, s1)
    waterfront.open_water_ships(ctx, _n(ctx, 1, 8))
    # A road parallel to the quay, some way inland.
    far = 2.0 * max(ctx.width, ctx.height)
    inland = coast.point - coast.normal * ctx.px(rng.uniform(50, 90))
    roads = []
    width = ctx.px(rng.uniform(8, 14))
    if waterfront.road_over_land(ctx, inland - coast.along * far, inland + coast.along * far, width):
        g.road(inland - coast.along * far, inland + coast.along * far, width, ppm=ctx.ppm)
        roads.append((inland - coast.along * far, inland + coast.along * far, width, 2))
    zones.tank_farm(ctx)
    zones.parking_lot(ctx, large=rng.random() < 0.6)
    zones.parking_lot(ctx)
    _quay_traffic(ctx, coast)
    fillers.scatter_buildings(ctx, _n(ctx, 3, 12), {"warehouse": 2, "block": 2, "shed": 1})
    _traffic(ctx, roads)
    fillers.tree_clusters(ctx, _n(ctx, 2, 8))


def _quay_traffic(ctx: SceneContext, coast) -> None:
    """Trucks and cars parked on the quay, parallel to it."""
    rng = ctx.rng
    s0, s1 = coast.extent(ctx.width, ctx.height)
    for _ in range(_n(ctx, 3, 12)):
        c = coast.point + coast.along * rng.uniform(s0, s1) - coast.normal * ctx.px(rng.uniform(5, 12))
        heading = waterfront.heading_angle(coast.along * rng.choice([-1, 1])) + np.deg2rad(rng.normal(0, 3))
        if rng.random() < 0.6:
            zones.large_vehicle(ctx, c[0], c[1], heading, margin=ctx.px(1))
        else:
            zones.car(ctx, c[0], c[1], heading, margin=ctx.px(1))


def _river_with_bridges(ctx: SceneContext, width_m: float, bridges: int):
    """A river crossed by ``bridges`` bridges spread along it, with their approach roads painted.
    Returns ``(river, roads)``."""
    rng = ctx.rng
    river = waterfront.add_river(ctx, width_m)
    ctx.features["river"] = river
    roads = []
    for k in range(bridges):
        frac = (k + rng.uniform(0.25, 0.75)) / bridges
        _, approach = waterfront.bridge(ctx, river, frac)
        for p0, p1, width in approach:
            ctx.ground.road(p0, p1, width, ppm=ctx.ppm)
            roads.append((p0, p1, width, 2))
    return river, roads


def _build_river(ctx: SceneContext) -> None:
    rng = ctx.rng
    g = ctx.ground
    g.fill("grass")
    g.mix_land("dry_grass", rng.uniform(-0.2, 1.0))
    fillers.crop_fields(ctx, _n(ctx, 0, 6))
    river, roads = _river_with_bridges(ctx, rng.uniform(40, 150), int(rng.choice([1, 2, 2, 3])))
    waterfront.open_water_ships(ctx, _n(ctx, 1, 7), along=river.direction_at, spread_deg=4)
    roads += _road_grid(ctx, (0, 1))
    for _ in range(_n(ctx, 1, 3)):
        zones.parking_lot(ctx)
    if rng.random() < 0.4:
        zones.tennis_courts(ctx)
    for p0, p1, width, _ in roads[:2]:
        fillers.houses_along(ctx, p0, p1, width / 2 * rng.choice([-1, 1]))
    fillers.scatter_buildings(ctx, _n(ctx, 2, 12), {"house": 3, "block": 1, "shed": 1})
    _traffic(ctx, roads)
    fillers.tree_clusters(ctx, _n(ctx, 4, 16))


def _build_urban(ctx: SceneContext) -> None:
    rng = ctx.rng
    g = ctx.ground
    g.fill("grass")
    g.mix_land("urban", rng.uniform(-0.6, 0.4))
    roads = []
    if rng.random() < 0.35:  # a canal through town, crossed by street bridges
        canal, roads = _river_with_bridges(ctx, rng.uniform(18, 40), int(rng.integers(1, 3)))
        waterfront.open_water_ships(ctx, int(rng.integers(0, 3)), along=canal.direction_at, spread_deg=3)
    roads += _road_grid(ctx, (1, 3))
    for _ in range(_n(ctx, 1, 3)):
        zones.tennis_courts(ctx)
    for _ in range(_n(ctx, 2, 5)):
        zones.parking_lot(ctx)
    if rng.random() < 0.4:
        zones.parking_lot(ctx, large=True)
    for p0, p1, width, _ in roads:
        if rng.random() < 0.6:
            fillers.houses_along(ctx, p0, p1, width / 2 * rng.choice([-1, 1]), pool_rate=0.3)
    fillers.scatter_buildings(ctx, _n(ctx, 8, 30), {"house": 4, "block": 2, "shed": 1})
    _traffic(ctx, roads)
    fillers.tree_clusters(ctx, _n(ctx, 8, 25))


def _build_industrial(ctx: SceneContext) -> None:
    rng = ctx.rng
    g = ctx.ground
    g.fill(str(rng.choice(["soil", "dry_grass", "sand"])))
    g.mix_land("urban", rng.uniform(-0.3, 0.6))
    roads = _road_grid(ctx, (1, 2))
    for _ in range(_n(ctx, 1, 4)):
        zones.tank_farm(ctx)
    for _ in range(_n(ctx, 1, 3)):
        zones.parking_lot(ctx, large=True)
    zones.parking_lot(ctx)
    for _ in range(_n(ctx, 1, 4)):
        b = fillers.building(ctx, "warehouse", rng.uniform(0, ctx.width), rng.uniform(0, ctx.height),
                             ctx.grid_angle + rng.integers(2) * np.pi / 2)
        if b is not None:
            zones.dock_trucks(ctx, b)
    _traffic(ctx, roads, density=(0.5, 2.5))
    fillers.scatter_buildings(ctx, _n(ctx, 2, 8), {"warehouse": 2, "shed": 2, "block": 1})
    fillers.tree_clusters(ctx, _n(ctx, 1, 8))


BUILDERS = {"airport": _build_airport, "port": _build_port, "river": _build_river, "urban": _build_urban,
            "industrial": _build_industrial}


def _ensure(ctx: SceneContext, label: str, attempts: int = 4) -> None:
    """Simpler, smaller placements for a theme's key class when the usual arrangement found no room."""
    rng = ctx.rng
    for attempt in range(attempts):
        if label in ctx.labels():
            return
        small = attempt > 0
        if label == "plane":
            model = zones.plane_model(ctx, (0.3 if small else 0.4) * min(ctx.width, ctx.height))
            pad_w, pad_h = model["span"] + ctx.px(8), model["length"] + ctx.px(8)
            angle = ctx.grid_angle + rng.integers(4) * np.pi / 2
            spot = ctx.find_zone(pad_w, pad_h, angle, (LAND, PAVED))
            if spot is not None:
                ctx.ground.paint_slabs(rect_corners(spot[0], spot[1], pad_w, pad_h, angle), "concrete", angle, 6.0)
                zones.plane(ctx, model, spot[0], spot[1], angle + np.deg2rad(rng.normal(0, 3)))
        elif label == "ship":
            river = ctx.features.get("river")
            waterfront.open_water_ships(ctx, 1, along=None if river is None else river.direction_at, spread_deg=5,
                                        small=small)
        elif label == "harbor" and "coast" in ctx.features:
            coast = ctx.features["coast"]
            s0, s1 = coast.extent(ctx.width, ctx.height)
            width = ctx.px(rng.uniform(5, 9))
            for _ in range(8):
                obj, _ = waterfront._pier(ctx, coast, rng.uniform(s0, s1), min(ctx.px(rng.uniform(30, 80)), 10 * width),
                                          width, {"deck": (175, 170, 160)})
                if obj is not None:
                    break
        elif label == "bridge" and "river" in ctx.features:
            _, approach = waterfront.bridge(ctx, ctx.features["river"], rng.uniform(0.1, 0.9), tries=12)
            for p0, p1, width in approach:
                ctx.ground.road(p0, p1, width, ppm=ctx.ppm)
        elif label == "storage-tank":
            zones.tank_farm(ctx, small=small)
        elif label == "tennis-court":
            zones.tennis_courts(ctx, small=small)
        elif label in ("small-vehicle", "large-vehicle"):
            if attempt < 2:
                zones.parking_lot(ctx, large=label == "large-vehicle", small=small)
            else:
                zones.scattered_vehicles(ctx, label, int(rng.integers(1, 4)))


# ---------------------------------------------------------------------------------------- rendering
def render(ctx: SceneContext, shadow_strength: float) -> np.ndarray:
    """Shadows and objects over the ground; returns the float32 canvas ``(H, W, 3)``."""
    canvas = ctx.ground.canvas
    sun = ctx.sun
    patches = []
    shadow_map = np.zeros((ctx.height, ctx.width), np.float32)
    for obj in ctx.objects:
        patch = rasterize(obj, draw_sprite(obj, sun), ctx.width, ctx.height)
        if patch is None:
            continue
        patches.append(patch)
        if obj.elevation > 0:
            accumulate_shadow(shadow_map, patch, (-sun[0] * obj.elevation, -sun[1] * obj.elevation), obj.shadow)
    # Shadows are lit by the blue sky: red darkens most.
    tint = shadow_strength * np.array([1.0, 0.94, 0.84])
    factor = cv2.transform(shadow_map[..., None], np.stack([-tint, np.ones(3)], 1).astype(np.float32))
    canvas *= factor
    for patch in patches:
        composite(canvas, patch)
    return canvas


def sensor_effects(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Per-image colour balance, contrast, saturation, haze, optics blur and noise; returns uint8 RGB.

    Contrast, saturation, channel gains and haze are all affine in RGB, so they are folded into one
    3 x 4 matrix and applied in a single ``cv2.transform`` pass.
    """
    mean = canvas[::4, ::4].reshape(-1, 3).mean(0).astype(np.float64)
    contrast, brightness = rng.uniform(0.85, 1.15), rng.uniform(0.9, 1.1)
    saturation = rng.uniform(0.7, 1.15)
    gains = rng.uniform(0.94, 1.06, 3)
    haze = rng.uniform(0.0, 0.12)
    # x -> (x - mean) * contrast + mean * brightness
    a = np.eye(3) * contrast
    b = mean * (brightness - contrast)
    # -> grey + (x - grey) * saturation, grey = channel mean
    sat = np.eye(3) * saturation + (1 - saturation) / 3.0
    a, b = sat @ a, sat @ b
    # -> gains, then haze towards a bluish grey
    a, b = (1 - haze) * gains[:, None] * a, (1 - haze) * gains * b + haze * np.array([190.0, 195.0, 205.0])
    img = cv2.transform(canvas, np.concatenate([a, b[:, None]], axis=1).astype(np.float32))
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.85))
    noise = rng.standard_normal(img.shape[:2], dtype=np.float32) * np.float32(rng.uniform(1.0, 3.0))
    img += noise[..., None]
    np.clip(img, 0, 255, out=img)
    img += 0.5
    return img.astype(np.uint8)


def generate_scene(rng: np.random.Generator, width: int, height: int, classes, theme: str | None = None,
                   gsd_range: tuple[float, float] = (0.15, 0.55)) -> Scene:
    """Generate one scene.

    Args:
        rng: the only source of randomness (same state -> same scene, byte for byte).
        width, height: image size in pixels.
        classes: DOTA class names to label (a subset of ``SYNTHETIC_CLASSES``).
        theme: one of ``THEMES``; drawn at random when ``None``.
        gsd_range: metres per pixel, drawn log-uniformly.
    """
    theme = theme or str(rng.choice(THEMES))
    if theme not in BUILDERS:
        raise ValueError(f"unknown scene theme {theme!r}; known: {THEMES}")
    gsd = float(np.exp(rng.uniform(np.log(gsd_range[0]), np.log(gsd_range[1]))))
    azimuth = rng.uniform(0, 2 * np.pi)
    elevation = np.deg2rad(rng.uniform(45, 75))
    # Most scenes are rotated; some are north-up, as many DOTA images are.
    grid_angle = float(rng.uniform(0, np.pi)) if rng.random() < 0.7 else float(rng.uniform(-0.05, 0.05))
    ctx = SceneContext(rng=rng, width=width, height=height, gsd=gsd, classes=frozenset(classes), grid_angle=grid_angle,
                       sun=np.array([np.cos(azimuth), np.sin(azimuth)]), shadow_per_metre=float(1 / np.tan(elevation)),
                       ground=Ground(rng, width, height, gsd))
    BUILDERS[theme](ctx)
    for label in THEME_CLASSES[theme]:
        if label in ctx.classes:
            _ensure(ctx, label)
    canvas = render(ctx, shadow_strength=rng.uniform(0.35, 0.6))
    image = sensor_effects(rng, canvas)
    return Scene(image, ctx.objects, gsd, theme, float(np.rad2deg(azimuth)), ctx.ground.surface)
