"""Renderers of the labelled object classes, drawn heading-up into a ``Sprite``.

Each ``render_<kind>(sprite, style)`` fills the sprite's footprint so that it touches all four sides of
the label rectangle (wing tips, nose and tail of a plane; bow, stern and beam of a ship; the rim of a
tank): the labels are tight boxes, as DOTA's are. ``style`` holds what placement decided (colours,
sub-type, ``seed`` for small details, ``ppm`` pixels per metre, ``light`` the unit vector towards the sun
in the object frame), so drawing itself is deterministic and needs no shared random state.
"""
from __future__ import annotations

import numpy as np

from .scenery import render_building, render_pool, render_tree
from .sprite import Sprite, supersampling
from .layout import SceneObject

GLASS = (38, 44, 52)
WHITE = (236, 236, 232)


def _rng(style) -> np.random.Generator:
    return np.random.default_rng(style.get("seed", 0))


def _rounded_rect(x0, y0, x1, y1, r, n: int = 4) -> np.ndarray:
    """Polygon ``(4n, 2)`` of a rectangle with corner radius ``r`` (clockwise from the top edge)."""
    r = max(min(r, (x1 - x0) / 2, (y1 - y0) / 2), 0.0)
    t = np.linspace(0, np.pi / 2, n)
    arcs = [(x1 - r, y0 + r, -np.pi / 2), (x1 - r, y1 - r, 0.0), (x0 + r, y1 - r, np.pi / 2),
            (x0 + r, y0 + r, np.pi)]
    pts = [np.stack([cx + r * np.cos(a0 + t), cy + r * np.sin(a0 + t)], 1) for cx, cy, a0 in arcs]
    return np.concatenate(pts)


def _cylinder(sp: Sprite, x0: float, x1: float, gain: float = 0.18) -> np.ndarray:
    """Across-width shading factor ``(Hs, Ws)``: bright along the middle of ``[x0, x1]``, as a curved roof."""
    x, _ = sp.grid()
    u = np.clip((x - (x0 + x1) / 2) / max((x1 - x0) / 2, 1e-6), -1, 1)
    return (1.0 + gain * 0.4 - gain * u * u).astype(np.float32)


# ---------------------------------------------------------------------------------------------- plane
def render_plane(sp: Sprite, style: dict) -> None:
    """Fuselage, swept wings spanning the full width, tailplane and engines; nose at y = 0."""
    w, h = sp.w, sp.h
    cx = w / 2
    body = np.asarray(style.get("body", WHITE), np.float32)
    wing = body * 0.9
    kind = style.get("type", "jet")
    fw = max((0.065 if kind == "prop" else 0.055) * h, 0.7)  # fuselage half width
    if kind == "prop":
        wy, c_root, c_tip, sweep = 0.24 * h, 0.17 * h, 0.12 * h, 0.03
        ty, t_span, t_root, t_tip = 0.84 * h, 0.2 * w, 0.1 * h, 0.07 * h
    else:
        wy, c_root, c_tip, sweep = style.get("wing_pos", 0.38) * h, 0.24 * h, 0.07 * h, style.get("sweep", 0.55)
        ty, t_span, t_root, t_tip = 0.8 * h, 0.18 * w, 0.12 * h, 0.05 * h
    # Keep the swept wing tip and the tailplane tips inside the box.
    tip_le = min(wy + sweep * (cx - fw), 0.78 * h - c_tip)
    tail_tip_le = min(ty + sweep * 0.6 * (t_span - fw), h - t_tip)
    for side in (-1, 1):
        root = cx + side * fw * 0.5
        sp.poly([(root, wy), (cx + side * cx, tip_le), (cx + side * cx, tip_le + c_tip), (root, wy + c_root)], wing)
        sp.poly([(root, ty), (cx + side * t_span, tail_tip_le), (cx + side * t_span, tail_tip_le + t_tip),
                 (root, ty + t_root)], wing)
    engines = style.get("engines", 2 if kind != "prop" else 0)
    for k in range(engines):
        frac = (0.32, 0.62)[k // 2] if engines > 2 else 0.34
        side = -1 if k % 2 == 0 else 1
        ex = cx + side * frac * cx
        le = wy + sweep * (abs(ex - cx) - fw)
        sp.ellipse(ex, le + 0.005 * h, max(fw * 0.5, 0.5), 0.045 * h, body * 0.78)
    # Fuselage: rounded nose, straight body, tapered tail cone ending at y = h.
    ys = np.concatenate([np.linspace(0, 0.1 * h, 8), [0.72 * h], np.linspace(0.8 * h, h, 3)])
    half = np.where(ys < 0.1 * h, fw * np.sqrt(np.clip(1 - (1 - ys / (0.1 * h)) ** 2, 0, 1)),
                    np.where(ys <= 0.72 * h, fw, fw * (1 - 0.65 * (ys - 0.72 * h) / (0.28 * h))))
    half[0] = min(0.25 * fw, half[1])
    outline = np.concatenate([np.stack([cx + half, ys], 1), np.stack([cx - half, ys], 1)[::-1]])
    sp.poly(outline, body)
    x, y = sp.grid()
    sp.shade(_cylinder(sp, cx - fw, cx + fw, 0.3), where=(np.abs(x - cx) < fw) & (y > 0.02 * h))
    fin = np.asarray(style.get("tail", body * 0.8), np.float32)
    sp.rect(cx - 0.3 * fw, 0.8 * h, cx + 0.3 * fw, h, fin, solid=False)
    if h > 40:
        sp.rect(cx - 0.6 * fw, 0.045 * h, cx + 0.6 * fw, 0.06 * h, GLASS, solid=False)


# ----------------------------------------------------------------------------------------------- ship
def _hull(w: float, h: float, bow: float, n: int = 10) -> np.ndarray:
    """Hull outline: pointed bow (y in [0, bow]), parallel sides, slightly narrowed square stern."""
    yb = np.linspace(0, bow, n)
    hb = (w / 2) * (yb / bow) ** 0.55
    ys = np.concatenate([yb, [0.85 * h, h]])
    hw = np.concatenate([hb, [w / 2, 0.42 * w]])
    right = np.stack([w / 2 + hw, ys], 1)
    left = np.stack([w / 2 - hw, ys], 1)[::-1]
    return np.concatenate([right, left])


def render_ship(sp: Sprite, style: dict) -> None:
    """Hull (bow at y = 0), inset deck and a superstructure that depends on the ship type."""
    rng = _rng(style)
    w, h = sp.w, sp.h
    kind = style.get("type", "boat")
    hull_c = np.asarray(style.get("hull", WHITE), np.float32)
    deck_c = np.asarray(style.get("deck", hull_c * 0.92), np.float32)
    bow = style.get("bow", 0.25) * h
    outline = _hull(w, h, bow)
    sp.poly(outline, hull_c)
    rim = max(0.09 * w, 0.35)
    inner = (outline - (w / 2, h / 2)) * ((w - 2 * rim) / w, (h - 2 * rim) / h) + (w / 2, h / 2)
    sp.poly(inner, deck_c, solid=False)
    ppm = style.get("ppm", 3.0)
    if kind == "cargo":
        x0, x1 = w / 2 - (w / 2 - rim) * 0.9, w / 2 + (w / 2 - rim) * 0.9
        y0, y1 = bow * 0.9, 0.8 * h
        cols = max(1, int(round((x1 - x0) / (2.5 * ppm))))
        bay = 6.2 * ppm
        rows = max(1, int((y1 - y0) / bay))
        palette = np.array([(170, 60, 45), (40, 90, 150), (60, 130, 70), (200, 120, 40), (150, 150, 150),
                            (220, 220, 215), (120, 40, 40)], np.float32)
        fill = rng.uniform(0.5, 1.0)
        for r in range(rows):
            for c in range(cols):
                if rng.random() < fill:
                    col = palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.1)
                    sp.rect(x0 + c * (x1 - x0) / cols, y0 + r * bay, x0 + (c + 1) * (x1 - x0) / cols - 0.12 * ppm,
                            y0 + (r + 1) * bay - 0.3 * ppm, col, solid=False)
        sp.rect(w * 0.14, 0.83 * h, w * 0.86, 0.93 * h, WHITE, solid=False)
        sp.line((w * 0.2, 0.845 * h), (w * 0.8, 0.845 * h), 0.4 * ppm, GLASS)
    elif kind == "tanker":
        sp.line((w / 2, bow * 0.7), (w / 2, 0.8 * h), max(0.8 * ppm, 0.6), (190, 190, 180))
        for yy in np.arange(bow, 0.8 * h, 8 * ppm):
            sp.line((w * 0.2, yy), (w * 0.8, yy), max(0.3 * ppm, 0.4), deck_c * 0.75)
        sp.rect(w * 0.16, 0.82 * h, w * 0.84, 0.94 * h, WHITE, solid=False)
    else:
        # Boats, yachts, ferries: a cabin amidships with a dark window band at its front.
        c0, c1 = style.get("cabin", (0.3, 0.62))
        cabin = np.asarray(style.get("cabin_colour", hull_c * 0.97), np.float32)
        sp.poly(_rounded_rect(w * 0.22, c0 * h, w * 0.78, c1 * h, 0.12 * w), cabin, solid=False)
        sp.rect(w * 0.26, c0 * h + 0.02 * h, w * 0.74, c0 * h + 0.06 * h, GLASS, solid=False)
        if style.get("teak", False):
            sp.rect(w * 0.2, 0.72 * h, w * 0.8, 0.95 * h, (150, 118, 82), solid=False)
        if style.get("mast", False):
            sp.line((w / 2, 0.3 * h), (w / 2, 0.85 * h), 0.12 * ppm, (90, 90, 95))


# ----------------------------------------------------------------------------------------- vehicles
def render_small_vehicle(sp: Sprite, style: dict) -> None:
    """A car, van or pickup seen from above: rounded body, windscreen, roof, rear window."""
    w, h = sp.w, sp.h
    body = np.asarray(style.get("body", (180, 180, 180)), np.float32)
    sp.poly(_rounded_rect(0, 0, w, h, 0.28 * w), body)
    glass = np.asarray(GLASS, np.float32) * (1.0 if body.mean() > 90 else 1.6)
    kind = style.get("type", "car")
    if kind == "van":
        sp.poly([(0.1 * w, 0.1 * h), (0.9 * w, 0.1 * h), (0.86 * w, 0.2 * h), (0.14 * w, 0.2 * h)], glass, False)
        sp.rect(0.12 * w, 0.22 * h, 0.88 * w, 0.96 * h, body * 1.04, solid=False)
    else:
        sp.poly([(0.12 * w, 0.25 * h), (0.88 * w, 0.25 * h), (0.84 * w, 0.38 * h), (0.16 * w, 0.38 * h)], glass, False)
        roof = body * (0.93 if style.get("roof") is None else 1.0)
        if style.get("roof") is not None:
            roof = np.asarray(style["roof"], np.float32)
        end = 0.6 if kind == "pickup" else 0.74
        sp.rect(0.15 * w, 0.38 * h, 0.85 * w, end * h, roof, solid=False)
        if kind == "pickup":
            sp.rect(0.14 * w, 0.63 * h, 0.86 * w, 0.95 * h, body * 0.6, solid=False)
        else:
            rear = [(0.16 * w, 0.74 * h), (0.84 * w, 0.74 * h), (0.87 * w, 0.84 * h), (0.13 * w, 0.84 * h)]
            sp.poly(rear, glass, False)
    sp.shade(_cylinder(sp, 0, w, 0.2))


def render_large_vehicle(sp: Sprite, style: dict) -> None:
    """A truck (cab + trailer), a box truck, a bus or a tank truck seen from above; front at y = 0."""
    w, h = sp.w, sp.h
    ppm = style.get("ppm", 3.0)
    kind = style.get("type", "truck")
    body = np.asarray(style.get("body", (225, 225, 220)), np.float32)
    if kind == "bus":
        sp.poly(_rounded_rect(0, 0, w, h, 0.15 * w), body)
        sp.rect(0.06 * w, 0.0, 0.94 * w, 0.04 * h, GLASS, solid=False)
        for y0 in (0.25, 0.6):
            sp.rect(0.2 * w, y0 * h, 0.8 * w, (y0 + 0.1) * h, body * 0.8, solid=False)
        sp.shade(_cylinder(sp, 0, w, 0.15))
        return
    cab_c = np.asarray(style.get("cab", (200, 40, 40)), np.float32)
    cab = max(min(2.4 * ppm, 0.3 * h), 0.12 * h)
    gap = max(0.5 * ppm, 0.02 * h) if kind != "box" else max(0.2 * ppm, 0.01 * h)
    sp.poly(_rounded_rect(0.02 * w, 0, 0.98 * w, cab, 0.2 * w), cab_c)
    sp.rect(0.1 * w, 0.04 * cab, 0.9 * w, 0.28 * cab, GLASS, solid=False)
    sp.rect(0.3 * w, cab, 0.7 * w, cab + gap, (45, 45, 48))
    if kind == "tanker":
        sp.poly(_rounded_rect(0.04 * w, cab + gap, 0.96 * w, h, 0.45 * w), body)
        x, y = sp.grid()
        sp.shade(_cylinder(sp, 0.04 * w, 0.96 * w, 0.5), where=y > cab + gap)
    else:
        sp.rect(0, cab + gap, w, h, body)
        for yy in np.arange(cab + gap + 1.2 * ppm, h, 1.2 * ppm):
            sp.line((0.05 * w, yy), (0.95 * w, yy), 0.08 * ppm, body * 0.9)
        sp.line((0.02 * w, cab + gap), (0.02 * w, h), 0.12 * ppm, body * 0.75)
        sp.line((0.98 * w, cab + gap), (0.98 * w, h), 0.12 * ppm, body * 0.75)


# ---------------------------------------------------------------------------------- storage tank
def render_storage_tank(sp: Sprite, style: dict) -> None:
    """A cylinder seen from above: lit rim, fixed (domed) or floating roof with the rim's shadow."""
    w, h = sp.w, sp.h
    r = min(w, h) / 2
    body = np.asarray(style.get("body", (215, 215, 210)), np.float32)
    lx, ly = style.get("light", (0.0, -1.0))
    sp.ellipse(w / 2, h / 2, w / 2, h / 2, body)
    x, y = sp.grid()
    dx, dy = (x - w / 2) / r, (y - h / 2) / r
    rad = np.sqrt(dx * dx + dy * dy)
    facing = dx * lx + dy * ly
    if style.get("roof", "fixed") == "floating":
        inner = 0.9
        roof = rad < inner
        # The rim wall shades the part of the roof next to it on the sun's side.
        depth = style.get("depth", 0.25)
        sx, sy = dx + depth * lx, dy + depth * ly
        shaded = roof & (sx * sx + sy * sy > inner * inner)
        factor = np.where(rad >= inner, 1.08 + 0.1 * facing, 0.9)
        factor = np.where(shaded, 0.55, factor)
        sp.shade(factor.astype(np.float32))
        sp.ellipse(w / 2, h / 2, 0.08 * w, 0.08 * h, body * 0.7, solid=False)
    else:
        sp.shade((1.0 + 0.22 * facing * np.clip(rad, 0, 1)).astype(np.float32))
        ring = (rad > 0.93) & (rad <= 1.0)
        sp.shade(np.float32(0.88) * np.ones_like(rad), where=ring)
        sp.ellipse(w / 2, h / 2, 0.05 * w, 0.05 * h, body * 0.8, solid=False)


# ---------------------------------------------------------------------------------- tennis court
def render_tennis_court(sp: Sprite, style: dict) -> None:
    """The doubles court (the label box, as DOTA annotators draw it: 23.77 x 10.97 m) with its lines:
    baselines and doubles sidelines on the box edges, singles sidelines, service boxes, the net.
    The run-off area around it is ground, painted by the court zone."""
    w, h = sp.w, sp.h
    ppm = style.get("ppm", 3.0)
    inner = np.asarray(style.get("inner", (70, 125, 82)), np.float32)
    line = np.asarray(style.get("line", (232, 234, 230)), np.float32)
    sp.rect(0, 0, w, h, inner)
    lw = max(0.07 * ppm, 0.45)
    e = lw / 2  # lines are centred half a line width inside the box edges
    kx, ky = w / 10.97, h / 23.77
    sx0, sx1 = w / 2 - 4.115 * kx, w / 2 + 4.115 * kx
    sy0, sy1 = h / 2 - 6.40 * ky, h / 2 + 6.40 * ky
    segments = [((0, e), (w, e)), ((0, h - e), (w, h - e)), ((e, 0), (e, h)), ((w - e, 0), (w - e, h)),
                ((sx0, 0), (sx0, h)), ((sx1, 0), (sx1, h)), ((sx0, sy0), (sx1, sy0)),
                ((sx0, sy1), (sx1, sy1)), ((w / 2, sy0), (w / 2, sy1))]
    for a, b in segments:
        sp.line(a, b, lw, line)
    sp.line((0, h / 2), (w, h / 2), max(0.12 * ppm, 0.5), (40, 42, 40))


# ------------------------------------------------------------------------------ harbor and bridge
def render_harbor(sp: Sprite, style: dict) -> None:
    """A pier or jetty: deck with darker edges and bollards; the seaward end is y = 0."""
    w, h = sp.w, sp.h
    ppm = style.get("ppm", 3.0)
    deck = np.asarray(style.get("deck", (170, 160, 150)), np.float32)
    sp.rect(0, 0, w, h, deck)
    edge = max(0.5 * ppm, 0.06 * w)
    sp.rect(0, 0, edge, h, deck * 0.82, solid=False)
    sp.rect(w - edge, 0, w, h, deck * 0.82, solid=False)
    if style.get("planks", False):
        for yy in np.arange(0, h, max(1.0 * ppm, 1.0)):
            sp.line((edge, yy), (w - edge, yy), 0.1 * ppm, deck * 0.9)
    for yy in np.arange(4 * ppm, h - 2 * ppm, 10 * ppm):
        for xx in (edge * 1.5, w - edge * 1.5):
            sp.ellipse(xx, yy, 0.35 * ppm, 0.35 * ppm, (60, 60, 62), solid=False)


def render_bridge(sp: Sprite, style: dict) -> None:
    """A road deck spanning y: lanes with markings between concrete parapets, expansion joints."""
    w, h = sp.w, sp.h
    ppm = style.get("ppm", 3.0)
    road = np.asarray(style.get("road", (95, 96, 98)), np.float32)
    wall = np.asarray(style.get("wall", (190, 188, 180)), np.float32)
    sp.rect(0, 0, w, h, road)
    para = max(0.8 * ppm, 0.06 * w)
    sp.rect(0, 0, para, h, wall, solid=False)
    sp.rect(w - para, 0, w, h, wall, solid=False)
    lw = max(0.15 * ppm, 0.4)
    lanes = max(2, int(round((w - 2 * para) / (3.5 * ppm))))
    for i in range(1, lanes):
        xx = para + i * (w - 2 * para) / lanes
        dash = 3 * ppm
        colour = (215, 190, 80) if i == lanes // 2 and lanes % 2 == 0 else (225, 225, 220)
        for yy in np.arange(0, h, 3 * dash):
            sp.line((xx, yy), (xx, min(yy + dash, h)), lw, colour)
    for yy in np.arange(25 * ppm, h, 25 * ppm):
        sp.line((para, yy), (w - para, yy), lw, road * 0.7)


RENDERERS = {
    "plane": render_plane,
    "ship": render_ship,
    "small-vehicle": render_small_vehicle,
    "large-vehicle": render_large_vehicle,
    "storage-tank": render_storage_tank,
    "tennis-court": render_tennis_court,
    "harbor": render_harbor,
    "bridge": render_bridge,
    "building": render_building,
    "tree": render_tree,
    "pool": render_pool,
}


def draw_sprite(obj: SceneObject, sun: np.ndarray) -> Sprite:
    """Render ``obj`` heading-up; ``sun`` ``(2,)`` is the unit vector towards the sun in the image."""
    s = supersampling(obj.w, obj.h)
    if obj.kind == "tree":
        s = min(s, 2)  # a crown has no fine lines; its speckle is noise at any scale
    sp = Sprite(obj.w, obj.h, s)
    c, s = np.cos(obj.angle), np.sin(obj.angle)
    # Image direction to object frame: the inverse rotation.
    light = (c * sun[0] + s * sun[1], -s * sun[0] + c * sun[1])
    try:
        renderer = RENDERERS[obj.kind]
    except KeyError:
        raise ValueError(f"no renderer for object kind {obj.kind!r}; known: {sorted(RENDERERS)}") from None
    renderer(sp, {**obj.style, "light": light})
    return sp
