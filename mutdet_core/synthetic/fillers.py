"""Unlabelled scenery in the space the zones left: buildings, trees, pools, crop fields.

Distractors matter for what the pipeline learns: a class-agnostic segmentation finds roofs and crowns as
readily as cars, so pseudo-labels contain them, as they contain them on real imagery, and a detector must
learn that a rectangular roof is not a large vehicle.
"""
from __future__ import annotations

import numpy as np

from .context import SceneContext
from .layout import rect_corners
from .terrain import LAND, PAVED, ROAD
from .zones import car

ROOFS = np.array([(168, 88, 66), (150, 78, 60), (120, 112, 106), (92, 92, 96), (176, 168, 152), (196, 194, 188),
                  (150, 136, 110), (110, 70, 58)], np.float32)
FLAT_ROOFS = np.array([(200, 198, 192), (176, 174, 170), (150, 148, 146), (214, 212, 206), (128, 128, 130)], np.float32)
BUILDING_TYPES = {  # name: (width range m, length range m, height range m, roof kinds)
    "house": ((8, 13), (10, 18), (4, 8), ("gable", "hip")),
    "block": ((14, 30), (25, 80), (10, 35), ("flat",)),
    "warehouse": ((25, 70), (40, 140), (7, 14), ("flat",)),
    "shed": ((4, 8), (5, 10), (2.5, 4), ("gable", "flat")),
}


def building(ctx: SceneContext, kind: str, cx: float, cy: float, angle: float, margin_m: float = 2.0):
    rng = ctx.rng
    (w0, w1), (l0, l1), (h0, h1), roofs = BUILDING_TYPES[kind]
    w, h = ctx.px(rng.uniform(w0, w1)), ctx.px(rng.uniform(l0, l1))
    limit = 0.45 * min(ctx.width, ctx.height)
    k = min(1.0, limit / max(w, h))
    roof = str(rng.choice(roofs))
    colour = (FLAT_ROOFS if roof == "flat" else ROOFS)
    style = {"roof": roof, "roof_colour": colour[rng.integers(len(colour))] * rng.uniform(0.92, 1.08),
             "ribs": kind == "warehouse" and rng.random() < 0.6}
    return ctx.place("building", None, cx, cy, w * k, h * k, angle, height_m=rng.uniform(h0, h1), style=style,
                     surfaces=(LAND,), margin=ctx.px(margin_m))


def scatter_buildings(ctx: SceneContext, count: int, weights: dict, tries_per: int = 6) -> int:
    """Up to ``count`` buildings aligned to the scene grid, types drawn with ``weights``."""
    rng = ctx.rng
    names = list(weights)
    p = np.array([weights[n] for n in names], float)
    placed = 0
    for _ in range(count * tries_per):
        if placed >= count:
            break
        kind = names[rng.choice(len(names), p=p / p.sum())]
        angle = ctx.grid_angle + rng.integers(2) * np.pi / 2 + np.deg2rad(rng.normal(0, 1.5))
        placed += building(ctx, kind, rng.uniform(0, ctx.width), rng.uniform(0, ctx.height), angle) is not None
    return placed


def houses_along(ctx: SceneContext, p0, p1, offset_px: float, pool_rate: float = 0.2) -> int:
    """A row of houses facing a road (``p0 -> p1``) at ``offset_px`` from its axis, with pools and
    driveway cars behind some of them."""
    rng = ctx.rng
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    length = np.hypot(*(p1 - p0))
    u = (p1 - p0) / max(length, 1e-9)
    n = np.array([-u[1], u[0]]) * np.sign(offset_px)
    angle = float(np.arctan2(n[0], -n[1]))  # house "front" faces away from the road
    t = rng.uniform(0, ctx.px(10))
    placed = 0
    plot = ctx.px(rng.uniform(16, 26))
    while t < length:
        c = p0 + u * t + n * (abs(offset_px) + ctx.px(rng.uniform(9, 13)))
        if building(ctx, "house", c[0], c[1], angle + np.deg2rad(rng.normal(0, 1)), margin_m=1.5) is not None:
            placed += 1
            if rng.random() < pool_rate:
                pc = c + n * ctx.px(rng.uniform(12, 16))
                ctx.place("pool", None, pc[0], pc[1], ctx.px(rng.uniform(4, 6)), ctx.px(rng.uniform(8, 12)),
                          angle + np.pi / 2 * rng.integers(2), surfaces=(LAND,), margin=ctx.px(1),
                          style={"water": (60 + rng.uniform(0, 30), 160 + rng.uniform(0, 30), 195)})
            if rng.random() < 0.5:
                dc = p0 + u * (t + ctx.px(7)) + n * (abs(offset_px) + ctx.px(rng.uniform(3.5, 5)))
                car(ctx, dc[0], dc[1], angle + np.pi * rng.integers(2) + np.deg2rad(rng.normal(0, 3)),
                    surfaces=(LAND, PAVED, ROAD), margin=ctx.px(0.5))
        t += plot
    return placed


def tree_clusters(ctx: SceneContext, clusters: int, per_cluster: tuple[int, int] = (3, 25),
                  crown_m: tuple[float, float] = (4.0, 11.0)) -> int:
    """Groups of trees on open land; crowns may overlap each other but no object or building."""
    rng = ctx.rng
    land = np.argwhere(ctx.ground.surface[::16, ::16] == LAND) * 16
    if not len(land):
        return 0
    placed = 0
    for _ in range(clusters):
        cy, cx = land[rng.integers(len(land))]
        spread = ctx.px(rng.uniform(8, 40))
        leaf = np.array([52, 78, 44], np.float32) * rng.uniform(0.8, 1.2) + rng.normal(0, 4, 3)
        for _ in range(int(rng.integers(*per_cluster))):
            d = ctx.px(rng.uniform(*crown_m))
            x, y = cx + rng.normal(0, spread), cy + rng.normal(0, spread)
            placed += ctx.place("tree", None, x, y, d, d * rng.uniform(0.9, 1.1), rng.uniform(0, np.pi),
                                height_m=rng.uniform(5, 14), shadow="cast", surfaces=(LAND,), margin=ctx.px(0.5),
                                register=False,
                                style={"leaf": leaf * rng.uniform(0.9, 1.1)}) is not None
    return placed


def crop_fields(ctx: SceneContext, count: int) -> None:
    """Rectangular crop fields on open land, aligned to the scene grid (rural surroundings)."""
    rng = ctx.rng
    for _ in range(count):
        w, h = ctx.px(rng.uniform(60, 250)), ctx.px(rng.uniform(60, 250))
        angle = ctx.grid_angle + np.deg2rad(rng.normal(0, 3))
        cx, cy = rng.uniform(0, ctx.width), rng.uniform(0, ctx.height)
        corners = rect_corners(cx, cy, w, h, angle)
        if (ctx.ground.surface_at(corners) == LAND).sum() + (ctx.ground.surface_at(corners) == 255).sum() < 4:
            continue
        ctx.ground.paint_field(corners, angle + rng.integers(2) * np.pi / 2)
