"""Water and what is on it: coasts with marinas and jetties, rivers with bridges, ships.

A port is a straight quay (man-made coasts are straight) with piers at right angles carrying boats in
dense rows on both sides, like the marinas of DOTA; commercial jetties carry large ships moored
alongside. A river is a meandering band; each bridge's label box spans the water from bank to bank plus
its abutments, and the road it carries continues on land (unlabelled), as in DOTA.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .context import SceneContext
from .terrain import LAND, PAVED, WATER, segment_polygon

HULLS_DARK = np.array([(120, 40, 36), (40, 42, 46), (40, 60, 110), (50, 90, 70), (150, 60, 40)], np.float32)
DECKS = np.array([(120, 60, 50), (70, 110, 80), (140, 140, 135), (160, 80, 60)], np.float32)


def heading_angle(direction) -> float:
    """Object angle whose heading (object-frame up) points along ``direction`` (image coordinates)."""
    return float(np.arctan2(direction[0], -direction[1]))


@dataclass
class Coast:
    """A straight coastline: ``point`` on it, ``along`` unit vector, ``normal`` unit vector to the water."""

    point: np.ndarray
    along: np.ndarray
    normal: np.ndarray

    def extent(self, width: int, height: int) -> tuple[float, float]:
        """Range of the along-coast coordinate that lies in the image."""
        corners = np.array([(0, 0), (width, 0), (width, height), (0, height)], float)
        s = (corners - self.point) @ self.along
        return float(s.min()), float(s.max())


def ship_style(ctx: SceneContext, kind: str) -> dict:
    rng = ctx.rng
    if kind in ("cargo", "tanker"):
        return {"type": kind, "hull": HULLS_DARK[rng.integers(len(HULLS_DARK))],
                "deck": DECKS[rng.integers(len(DECKS))] * rng.uniform(0.9, 1.1), "bow": rng.uniform(0.1, 0.16)}
    if kind == "ferry":
        return {"type": "boat", "hull": (232, 232, 230), "deck": (215, 215, 210), "cabin": (0.15, 0.85),
                "cabin_colour": (240, 240, 238), "bow": rng.uniform(0.15, 0.22)}
    if kind == "fishing":
        return {"type": "boat", "hull": HULLS_DARK[rng.integers(len(HULLS_DARK))] * 1.3, "deck": (150, 150, 145),
                "cabin": (0.55, 0.78), "cabin_colour": (230, 230, 225), "bow": rng.uniform(0.2, 0.3)}
    white = rng.uniform(222, 245)
    return {"type": "boat", "hull": (white, white, white - 3), "deck": (white - 14,) * 3,
            "cabin": (rng.uniform(0.25, 0.35), rng.uniform(0.55, 0.68)), "cabin_colour": (white - 6,) * 3,
            "teak": bool(rng.random() < 0.5), "mast": bool(rng.random() < 0.35), "bow": rng.uniform(0.28, 0.4)}


def ship(ctx: SceneContext, kind: str, cx, cy, length_px, beam_px, angle, margin=None):
    height = {"boat": 1.5, "fishing": 3.0, "ferry": 5.0, "cargo": 12.0, "tanker": 10.0}[kind]
    return ctx.place("ship", "ship", cx, cy, beam_px, length_px, angle, height_m=height,
                     style=ship_style(ctx, kind), surfaces=(WATER,), margin=ctx.px(0.5) if margin is None else margin)


def random_ship_size(ctx: SceneContext, max_len_px: float, small: bool = False) -> tuple[str, float, float]:
    """A ship type with length and beam in pixels, from yachts to bulk carriers (``small``: boats only)."""
    rng = ctx.rng
    kind = "boat" if small else str(rng.choice(["boat", "fishing", "ferry", "cargo", "tanker"],
                                               p=[0.45, 0.2, 0.08, 0.17, 0.1]))
    length = {"boat": rng.uniform(6, 20), "fishing": rng.uniform(12, 35), "ferry": rng.uniform(30, 90),
              "cargo": rng.uniform(60, 220), "tanker": rng.uniform(60, 220)}[kind]
    ratio = {"boat": rng.uniform(2.6, 3.6), "fishing": rng.uniform(3.2, 4.2), "ferry": rng.uniform(4.0, 5.5),
             "cargo": rng.uniform(6.0, 7.5), "tanker": rng.uniform(5.5, 7.0)}[kind]
    length = min(ctx.px(length), max_len_px)
    return kind, length, length / ratio


# ------------------------------------------------------------------------------------------- coast
def add_coast(ctx: SceneContext, water_fraction: float) -> Coast:
    """Water beyond a straight quay covering about ``water_fraction`` of the image, plus a paved quay."""
    rng = ctx.rng
    a = ctx.grid_angle + rng.integers(4) * np.pi / 2
    normal = np.array([np.cos(a), np.sin(a)])
    along = np.array([-normal[1], normal[0]])
    corners = np.array([(0, 0), (ctx.width, 0), (ctx.width, ctx.height), (0, ctx.height)], float)
    proj = corners @ normal
    level = proj.max() - water_fraction * (proj.max() - proj.min())
    centre = np.array([ctx.width / 2, ctx.height / 2])
    point = centre + normal * (level - centre @ normal)
    big = 4.0 * max(ctx.width, ctx.height)
    water = [point + along * big, point + along * big + normal * big, point - along * big + normal * big,
             point - along * big]
    quay = ctx.px(rng.uniform(15, 45))
    quay_poly = [point + along * big, point - along * big, point - along * big - normal * quay,
                 point + along * big - normal * quay]
    ctx.ground.paint_slabs(np.array(quay_poly), "concrete", a, rng.uniform(4, 8), PAVED,
                           tint=rng.uniform(0.9, 1.05) * rng.uniform(0.98, 1.02, 3))
    ctx.ground.paint_polygon(np.array(water), "water", WATER)
    ctx.ground.strokes([(point + along * big, point - along * big)], max(ctx.px(0.8), 1.0), (190, 188, 180), 0.9)
    return Coast(point, along, normal)


def _pier(ctx: SceneContext, coast: Coast, s: float, length: float, width: float, style: dict):
    """Place a pier at along-coast coordinate ``s``; shortens it until it fits. Returns (obj, length)."""
    base = coast.point + coast.along * s
    for _ in range(4):
        centre = base + coast.normal * (length / 2 - ctx.px(2))
        obj = ctx.place("harbor", "harbor", centre[0], centre[1], width, length, heading_angle(coast.normal),
                        height_m=1.2, style=style, margin=ctx.px(2))
        if obj is not None:
            return obj, length
        length *= 0.75
    return None, 0.0


def marina(ctx: SceneContext, coast: Coast, s0: float, s1: float) -> int:
    """Narrow pontoons at right angles to the quay, boats moored bow-in on both sides."""
    rng = ctx.rng
    boat = ctx.px(rng.uniform(7, 14))
    pier_w = ctx.px(rng.uniform(3.5, 8))
    spacing = 2 * boat + ctx.px(rng.uniform(10, 20)) + pier_w
    # Real pontoons reach 40:1 (DOTA P0706: 150 x 4 m); 12:1 keeps them learnable by a small detector.
    length = min(ctx.px(rng.uniform(40, 150)), 12 * pier_w)
    style = {"deck": (150, 95, 70) if rng.random() < 0.5 else (175, 170, 160), "planks": bool(rng.random() < 0.5)}
    occupancy = rng.uniform(0.6, 0.97)
    placed = 0
    for s in np.arange(s0 + spacing / 2, s1 - spacing / 2, spacing):
        obj, pier_len = _pier(ctx, coast, s, min(length * rng.uniform(0.85, 1.15), 12 * pier_w), pier_w, style)
        if obj is None:
            continue
        placed += obj.label is not None
        base = coast.point + coast.along * s
        for side in (-1, 1):
            d = ctx.px(4)
            while d < pier_len - ctx.px(4):
                bl = boat * rng.uniform(0.75, 1.2)
                beam = bl / rng.uniform(2.6, 3.4)
                d += beam / 2
                if rng.random() < occupancy:
                    c = base + coast.normal * (d - ctx.px(2)) + coast.along * side * (pier_w / 2 + ctx.px(0.6) + bl / 2)
                    bow_in = rng.random() < 0.75
                    heading = heading_angle(-side * coast.along if bow_in else side * coast.along)
                    placed += ship(ctx, "boat", c[0], c[1], bl, beam, heading + np.deg2rad(rng.normal(0, 3)),
                                   margin=ctx.px(0.3)) is not None
                d += beam / 2 + ctx.px(rng.uniform(0.6, 1.5))
    return placed


def jetties(ctx: SceneContext, coast: Coast, s0: float, s1: float) -> int:
    """Wide jetties with large ships moored alongside, and ships moored along the quay between them."""
    rng = ctx.rng
    placed = 0
    width = ctx.px(rng.uniform(10, 22))
    length = min(ctx.px(rng.uniform(100, 300)), 10 * width)
    spacing = ctx.px(rng.uniform(90, 180)) + width
    style = {"deck": (178, 176, 170)}
    for s in np.arange(s0 + spacing / 2, s1 - spacing / 4, spacing):
        obj, jl = _pier(ctx, coast, s, length, width, style)
        if obj is None:
            continue
        placed += obj.label is not None
        base = coast.point + coast.along * s
        for side in (-1, 1):
            if rng.random() < 0.25:
                continue
            kind = str(rng.choice(["cargo", "tanker", "fishing"], p=[0.5, 0.3, 0.2]))
            sl = min(jl * rng.uniform(0.6, 1.0), ctx.px(220), 0.6 * min(ctx.width, ctx.height))
            beam = sl / rng.uniform(5.5, 7.5)
            c = base + coast.normal * (jl / 2 - ctx.px(2)) + coast.along * side * (width / 2 + ctx.px(1.5) + beam / 2)
            heading = heading_angle(coast.normal if rng.random() < 0.5 else -coast.normal)
            placed += ship(ctx, kind, c[0], c[1], sl, beam, heading) is not None
    # Along the quay face.
    for _ in range(int(rng.integers(0, 4))):
        kind, sl, beam = random_ship_size(ctx, 0.5 * min(ctx.width, ctx.height))
        c = coast.point + coast.along * rng.uniform(s0, s1) + coast.normal * (beam / 2 + ctx.px(1.5))
        heading = heading_angle(coast.along if rng.random() < 0.5 else -coast.along)
        placed += ship(ctx, kind, c[0], c[1], sl, beam, heading) is not None
    return placed


def open_water_ships(ctx: SceneContext, count: int, along=None, spread_deg: float = 180.0,
                     small: bool = False) -> int:
    """Ships at anchor or under way anywhere on water; moving ones leave a wake.

    ``along``: preferred heading direction (rivers), with ``spread_deg`` jitter; ``None`` for any heading.
    ``small``: boats only (a fallback where water is narrow).
    """
    rng = ctx.rng
    water = np.argwhere(ctx.ground.surface[::8, ::8] == WATER) * 8
    if not len(water):
        return 0
    placed = 0
    for _ in range(count * 4):
        if placed >= count:
            break
        y, x = water[rng.integers(len(water))] + rng.uniform(0, 8, 2)
        kind, sl, beam = random_ship_size(ctx, 0.45 * min(ctx.width, ctx.height), small)
        if along is None:
            heading = rng.uniform(0, 2 * np.pi)
        else:
            d = along(x, y) * (1 if rng.random() < 0.5 else -1)
            heading = heading_angle(d) + np.deg2rad(rng.normal(0, spread_deg))
        obj = ship(ctx, kind, x, y, sl, beam, heading, margin=ctx.px(5))
        if obj is None:
            continue
        placed += 1
        if rng.random() < 0.55:
            back = -np.array([np.sin(heading), -np.cos(heading)])
            stern = np.array([x, y]) + back * sl / 2
            ctx.ground.wake(stern, back, sl * rng.uniform(1.5, 5), beam)
    return placed


# ------------------------------------------------------------------------------------------- river
@dataclass
class River:
    """Centreline points ``(N, 2)``, unit directions ``(N, 2)`` and widths ``(N,)`` in pixels."""

    centre: np.ndarray
    direction: np.ndarray
    width: np.ndarray

    def direction_at(self, x: float, y: float) -> np.ndarray:
        i = int(np.argmin(np.sum((self.centre - (x, y)) ** 2, axis=1)))
        return self.direction[i]


def add_river(ctx: SceneContext, width_m: float) -> River:
    """A meandering river across the image with sandy banks."""
    rng = ctx.rng
    theta = rng.uniform(0, np.pi)
    d = np.array([np.cos(theta), np.sin(theta)])
    n = np.array([-d[1], d[0]])
    size = max(ctx.width, ctx.height)
    centre = np.array([ctx.width / 2, ctx.height / 2]) + n * rng.uniform(-0.2, 0.2) * min(ctx.width, ctx.height)
    t = np.linspace(-1.5 * size, 1.5 * size, 240)
    wiggle = np.zeros_like(t)
    for k in range(3):
        wavelength = size * rng.uniform(0.8, 2.5) / (k + 1)
        wiggle += rng.uniform(0.02, 0.08) * size / (k + 1) * np.sin(2 * np.pi * t / wavelength + rng.uniform(0, 6.3))
    base = min(ctx.px(width_m), 0.4 * min(ctx.width, ctx.height))
    # Bends tighter than the river is wide would fold the inner bank over itself: keep the radius of
    # curvature of the centreline above the width (curvature of a gentle curve ~ its second derivative).
    dt = t[1] - t[0]
    curvature = np.abs(np.gradient(np.gradient(wiggle, dt), dt)).max()
    wiggle *= min(1.0, 1.0 / max(curvature * 1.15 * base, 1e-9))
    pts = centre + t[:, None] * d + wiggle[:, None] * n
    tangent = np.gradient(pts, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
    width = base * (1 + 0.12 * np.sin(2 * np.pi * t / (size * rng.uniform(0.5, 1.5)) + rng.uniform(0, 6.3)))
    left, right = pts + normal * width[:, None] / 2, pts - normal * width[:, None] / 2
    bank = ctx.px(rng.uniform(2, 6))
    ctx.ground.paint_polygon(np.concatenate([left + normal * bank, (right - normal * bank)[::-1]]),
                             str(rng.choice(["sand", "soil"])), LAND)
    ctx.ground.paint_polygon(np.concatenate([left, right[::-1]]), "water", WATER)
    return River(pts, tangent, width)


def bridge(ctx: SceneContext, river: River, frac: float, tries: int = 8) -> tuple[int, list]:
    """A bridge across ``river`` near fraction ``frac`` of its visible length (other places are tried
    when it does not fit in the image there).

    Returns ``(labelled count, roads)`` where roads are ``(p0, p1, width_px)`` for the approach roads.
    """
    rng = ctx.rng
    inside = (river.centre[:, 0] > 0) & (river.centre[:, 0] < ctx.width) & (river.centre[:, 1] > 0) \
        & (river.centre[:, 1] < ctx.height)
    idx = np.flatnonzero(inside)
    if len(idx) < 3:
        return 0, []
    for attempt in range(tries):
        f = frac if attempt == 0 else rng.uniform(0.1, 0.9)
        i = idx[int(np.clip(f, 0.1, 0.9) * (len(idx) - 1))]
        result = _bridge_at(ctx, river, i)
        if result is not None:
            return result
    return 0, []


def _bridge_at(ctx: SceneContext, river: River, i: int):
    rng = ctx.rng
    c = river.centre[i]
    # Bridges of one town stand well apart.
    spacing = 0.3 * max(ctx.width, ctx.height)
    if any(o.kind == "bridge" and np.hypot(o.cx - c[0], o.cy - c[1]) < spacing for o in ctx.objects):
        return None
    across = np.array([-river.direction[i][1], river.direction[i][0]])
    tilt = np.deg2rad(rng.normal(0, 8))
    across = np.array([np.cos(tilt) * across[0] - np.sin(tilt) * across[1],
                       np.sin(tilt) * across[0] + np.cos(tilt) * across[1]])
    # Measure the water crossing along the bridge line: the run of water around the centre point.
    s = np.arange(-2 * river.width[i], 2 * river.width[i], 1.0)
    wet = ctx.ground.surface_at(c + s[:, None] * across) == WATER
    zero = len(s) // 2
    if not wet[zero]:
        return None
    a = zero - np.argmin(wet[zero::-1]) if not wet[:zero].all() else 0
    b = zero + np.argmin(wet[zero:]) if not wet[zero:].all() else len(s) - 1
    deck_w = ctx.px(rng.uniform(9, 24))
    abutment = ctx.px(rng.uniform(4, 12))
    span = s[b] - s[a] + 2 * abutment
    deck_w = max(deck_w, span / 10)
    mid = c + across * (s[a] + s[b]) / 2
    obj = ctx.place("bridge", "bridge", mid[0], mid[1], deck_w, span, heading_angle(across),
                    height_m=rng.uniform(6, 12), shadow="cast", margin=ctx.px(2))
    if obj is None:
        return None
    far = 3.0 * max(ctx.width, ctx.height)
    road_w = deck_w * 0.86
    roads = [(mid + across * span / 2, mid + across * far, road_w),
             (mid - across * span / 2, mid - across * far, road_w)]
    return int(obj.label is not None), roads


def road_over_land(ctx: SceneContext, p0, p1, width_px: float) -> bool:
    """Whether a road band from ``p0`` to ``p1`` avoids water (sampled every few pixels)."""
    poly = segment_polygon(p0, p1, width_px)
    ts = np.linspace(0, 1, 64)[:, None]
    pts = np.concatenate([poly[0] + (poly[1] - poly[0]) * ts, poly[3] + (poly[2] - poly[3]) * ts])
    return not (ctx.ground.surface_at(pts) == WATER).any()
