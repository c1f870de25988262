"""Land use zones and the objects in them: parking lots, aprons, tank farms, courts, traffic, scenery.

Each function paints its zone on the ground and places objects in the arrangement real imagery shows:
cars in stalls in back-to-back rows, planes in a row at their stands, tanks on a grid inside a bund,
courts side by side. Sizes are drawn in metres and converted with the scene's gsd, so one scene is
consistently scaled and scale varies between scenes. Every function returns the number of labelled
objects it placed.
"""
from __future__ import annotations

import numpy as np

from .context import SceneContext
from .layout import local_to_image, rect_corners
from .terrain import LAND, PAVED, ROAD, clip_segment

CAR_COLOURS = np.array([(235, 235, 232), (30, 30, 34), (150, 152, 155), (190, 192, 195), (120, 30, 30),
                        (40, 60, 120), (90, 95, 100), (200, 200, 190), (160, 40, 30), (60, 90, 60)], np.float32)
CAR_WEIGHTS = np.array([0.24, 0.16, 0.16, 0.14, 0.06, 0.07, 0.07, 0.04, 0.03, 0.03])
TRUCK_BODIES = np.array([(232, 232, 228), (205, 205, 200), (170, 170, 168), (40, 80, 140), (190, 50, 40),
                         (70, 110, 70)], np.float32)
BUS_BODIES = np.array([(235, 190, 45), (238, 238, 235), (60, 100, 170), (200, 60, 50)], np.float32)
TANK_BODIES = np.array([(222, 222, 218), (200, 202, 200), (176, 178, 175), (120, 128, 110), (70, 76, 70)], np.float32)
TANK_WEIGHTS = np.array([0.45, 0.25, 0.15, 0.1, 0.05])
# (run-off, court) colours: green, blue in green, blue, red clay, green in red. Where both are the same
# paint, the court is a darker shade of it (hard courts are two-tone): lines alone are hard to see at 0.5 m.
COURT_STYLES = [((82, 138, 92), (52, 98, 62)), ((72, 128, 84), (52, 92, 140)), ((68, 112, 160), (40, 72, 122)),
                ((194, 112, 76), (150, 78, 50)), ((150, 70, 60), (66, 120, 80))]


def _zone_angle(ctx: SceneContext, jitter_deg: float = 0.0) -> float:
    """The scene's grid orientation or its perpendicular, with a little jitter."""
    return ctx.grid_angle + ctx.rng.integers(2) * np.pi / 2 + np.deg2rad(ctx.rng.normal(0, jitter_deg))


def _fit_zone(ctx: SceneContext, w: float, h: float, angle: float, surfaces=(LAND,), shrink: int = 4):
    """Find a place for a ``w x h`` zone, shrinking both sides by 15 % per failure; ``(cx, cy, w, h)``."""
    for _ in range(shrink + 1):
        spot = ctx.find_zone(w, h, angle, surfaces)
        if spot is not None:
            return spot[0], spot[1], w, h
        w, h = w * 0.85, h * 0.85
    return None


def car(ctx: SceneContext, cx, cy, angle, surfaces=(PAVED,), margin=None):
    """One small vehicle (car 80 %, van 12 %, pickup 8 %), colours as on real roads."""
    rng = ctx.rng
    kind = rng.choice(["car", "van", "pickup"], p=[0.8, 0.12, 0.08])
    length = rng.uniform(5.0, 5.6) if kind != "car" else rng.uniform(4.1, 4.9)
    width = rng.uniform(1.9, 2.05) if kind != "car" else rng.uniform(1.7, 1.95)
    body = CAR_COLOURS[rng.choice(len(CAR_COLOURS), p=CAR_WEIGHTS)] * rng.uniform(0.92, 1.06)
    style = {"type": str(kind), "body": body}
    if rng.random() < 0.08:
        style["roof"] = (30, 30, 32)
    return ctx.place("small-vehicle", "small-vehicle", cx, cy, ctx.px(width), ctx.px(length), angle,
                     height_m=1.5, surfaces=surfaces, style=style,
                     margin=ctx.px(0.15) if margin is None else margin)


def large_vehicle(ctx: SceneContext, cx, cy, angle, kind=None, length_m=None, surfaces=(PAVED,), margin=None):
    """One large vehicle: articulated truck, box truck, tank truck or bus (DOTA: 6-22 m long)."""
    rng = ctx.rng
    kind = kind or str(rng.choice(["truck", "box", "tanker", "bus"], p=[0.4, 0.25, 0.12, 0.23]))
    if length_m is None:
        length_m = {"truck": rng.uniform(11, 17.5), "box": rng.uniform(6, 9.5), "tanker": rng.uniform(9, 16),
                    "bus": rng.uniform(10, 13)}[kind]
    width_m = rng.uniform(2.4, 2.6)
    if kind == "bus":
        style = {"type": "bus", "body": BUS_BODIES[rng.integers(len(BUS_BODIES))]}
    else:
        body = (205, 208, 210) if kind == "tanker" else TRUCK_BODIES[rng.integers(len(TRUCK_BODIES))]
        style = {"type": kind, "body": body, "cab": CAR_COLOURS[rng.integers(len(CAR_COLOURS))]}
    return ctx.place("large-vehicle", "large-vehicle", cx, cy, ctx.px(width_m), ctx.px(length_m), angle,
                     height_m=3.6, surfaces=surfaces, style=style, margin=ctx.px(0.2) if margin is None else margin)


# ------------------------------------------------------------------------------------ parking lots
def parking_lot(ctx: SceneContext, large: bool = False, max_rows: int = 4, small: bool = False) -> int:
    """Back-to-back rows of stalls between aisles, filled with cars (or buses / trucks when ``large``).
    ``small``: one double row of a few stalls (a fallback where space is short)."""
    rng = ctx.rng
    if large:
        kind = str(rng.choice(["truck", "bus", "tanker"], p=[0.5, 0.35, 0.15]))
        veh_len = rng.uniform(11, 17) if kind == "truck" else rng.uniform(10.5, 13)
        pitch, depth, aisle = rng.uniform(3.4, 4.5), veh_len + rng.uniform(1.0, 2.5), rng.uniform(12, 18)
    else:
        pitch, depth, aisle = rng.uniform(2.4, 2.8), rng.uniform(4.9, 5.5), rng.uniform(6.0, 7.5)
    modules = 1 if small else int(rng.integers(1, max_rows // 2 + 1))
    n_stalls = int(rng.integers(3, 7)) if small else int(rng.integers(8, 30))
    w_m, h_m = n_stalls * pitch + 4, modules * (2 * depth + aisle) + aisle
    angle = _zone_angle(ctx, 1.0)
    zone = _fit_zone(ctx, ctx.px(w_m), ctx.px(h_m), angle)
    if zone is None:
        return 0
    cx, cy, w, h = zone
    scale = w / ctx.px(w_m)  # the zone may have shrunk: fewer stalls, same stall size
    n_stalls = max(int((w - ctx.px(4)) / ctx.px(pitch)), 1)
    modules = max(int((h - ctx.px(aisle)) / ctx.px(2 * depth + aisle)), 1) if scale < 1 else modules
    surface = "asphalt" if rng.random() < 0.7 else "asphalt_old"
    ctx.ground.paint_polygon(rect_corners(cx, cy, w, h, angle), surface, PAVED)
    occupancy = rng.uniform(0.75, 0.95) if small else rng.uniform(0.45, 0.95)
    placed = 0
    lines = []
    xs = (np.arange(n_stalls) - (n_stalls - 1) / 2) * ctx.px(pitch)
    for m in range(modules):
        back = -h / 2 + ctx.px(aisle) + ctx.px(depth) + m * ctx.px(2 * depth + aisle)
        for side in (-1, 1):  # row above the back line (-1) and below it (+1)
            centre_y = back + side * ctx.px(depth) / 2
            edges = np.append(xs - ctx.px(pitch) / 2, xs[-1] + ctx.px(pitch) / 2)
            for ex in edges:
                lines.append(local_to_image(cx, cy, angle, np.array([ex, ex]),
                                            np.array([back, back + side * ctx.px(depth) * 0.85])))
            for x in xs:
                if rng.random() > occupancy:
                    continue
                nose_in = rng.random() < 0.7
                # Row above the back line: nose in means heading towards +y of the zone.
                heading = angle + (np.pi if (side < 0) == nose_in else 0.0) + np.deg2rad(rng.normal(0, 2.5))
                jx, jy = rng.normal(0, ctx.px(0.12), 2)
                px, py = local_to_image(cx, cy, angle, x + jx, centre_y + jy + side * ctx.px(0.2))
                if large:
                    ok = large_vehicle(ctx, px, py, heading, kind=kind, length_m=veh_len * rng.uniform(0.97, 1.0))
                else:
                    ok = car(ctx, px, py, heading)
                placed += ok is not None
        lines.append(local_to_image(cx, cy, angle, np.array([edges[0], edges[-1]]), np.array([back, back])))
    segs = [((a[0], b[0]), (a[1], b[1])) for a, b in lines]
    ctx.ground.strokes(segs, ctx.px(0.12), (225, 225, 220), 0.75)
    return placed


# ------------------------------------------------------------------------------------------- airport
PLANE_MODELS = {  # name: (length range m, span / length range, type, engines, probability)
    "light": ((8, 13), (1.15, 1.35), "prop", 0, 0.3),
    "regional": ((20, 30), (0.85, 1.0), "jet", 2, 0.25),
    "narrow": ((30, 44), (0.85, 1.0), "jet", 2, 0.3),
    "wide": ((55, 72), (0.9, 1.0), "jet", 4, 0.15),
}
PLANE_LIVERIES = np.array([(236, 236, 236), (228, 230, 234), (214, 216, 220), (240, 238, 230)], np.float32)


def plane_model(ctx: SceneContext, max_px: float) -> dict:
    """A plane type with length / span in pixels, no larger than ``max_px``."""
    rng = ctx.rng
    names = list(PLANE_MODELS)
    p = np.array([PLANE_MODELS[n][4] for n in names])
    name = names[rng.choice(len(names), p=p / p.sum())]
    (l0, l1), (r0, r1), kind, engines, _ = PLANE_MODELS[name]
    length = ctx.px(rng.uniform(l0, l1))
    span = length * rng.uniform(r0, r1)
    shrink = min(1.0, max_px / max(length, span))
    tail = (np.array([200, 40, 40]) if rng.random() < 0.3 else rng.uniform(40, 230, 3)).astype(np.float32)
    return {"length": length * shrink, "span": span * shrink, "type": kind,
            "engines": engines if rng.random() > 0.15 or engines == 0 else 2,
            "body": PLANE_LIVERIES[rng.integers(len(PLANE_LIVERIES))], "tail": tail,
            "sweep": rng.uniform(0.45, 0.65), "wing_pos": rng.uniform(0.36, 0.42)}


def plane(ctx: SceneContext, model: dict, cx, cy, angle, surfaces=(PAVED,), size_jitter: float = 0.03):
    k = ctx.rng.uniform(1 - size_jitter, 1 + size_jitter)
    style = {key: model[key] for key in ("type", "engines", "body", "tail", "sweep", "wing_pos")}
    return ctx.place("plane", "plane", cx, cy, model["span"] * k, model["length"] * k, angle,
                     height_m=3.5, shadow="cast", style=style, surfaces=surfaces, margin=ctx.px(1.5))


def apron(ctx: SceneContext, angle: float | None = None) -> int:
    """A concrete apron with one or two rows of parked planes, lead-in lines, and service vehicles."""
    rng = ctx.rng
    if "plane" not in ctx.classes:
        return 0
    angle = _zone_angle(ctx) if angle is None else angle
    model = plane_model(ctx, 0.35 * min(ctx.width, ctx.height))
    gap = ctx.px(rng.uniform(4, 15))
    rows = int(rng.integers(1, 3))
    n = int(rng.integers(4, 11))
    w = n * (model["span"] + gap) + ctx.px(20)
    h = rows * (model["length"] + ctx.px(18)) + ctx.px(25)
    zone = _fit_zone(ctx, min(w, 0.95 * max(ctx.width, ctx.height)), h, angle, shrink=6)
    if zone is None:
        return 0
    cx, cy, w, h = zone
    kind = "concrete" if rng.random() < 0.7 else "asphalt_old"
    ctx.ground.paint_slabs(rect_corners(cx, cy, w, h, angle), kind, angle, rng.uniform(5, 8),
                           tint=rng.uniform(0.75, 0.98) * rng.uniform(0.97, 1.03, 3))
    n = max(int((w - ctx.px(10)) / (model["span"] + gap)), 1)
    rows = max(min(rows, int((h - ctx.px(10)) / (model["length"] + ctx.px(15)))), 1)
    placed = 0
    yellow = []
    for r in range(rows):
        front = -h / 2 + ctx.px(12) + r * (model["length"] + ctx.px(18))
        for x in (np.arange(n) - (n - 1) / 2) * (model["span"] + gap):
            ly = front + model["length"] / 2
            px, py = local_to_image(cx, cy, angle, x + rng.normal(0, ctx.px(0.5)), ly + rng.normal(0, ctx.px(0.5)))
            heading = angle + np.deg2rad(rng.normal(0, 2))
            placed += plane(ctx, model, px, py, heading) is not None
            yellow.append(local_to_image(cx, cy, angle, np.array([x, x]), np.array([front - ctx.px(8), ly])))
    yellow.append(local_to_image(cx, cy, angle, np.array([-w / 2, w / 2]), np.full(2, -h / 2 + ctx.px(4))))
    ctx.ground.strokes([((a[0], b[0]), (a[1], b[1])) for a, b in yellow], ctx.px(0.25), (215, 185, 70), 0.8)
    # Service vehicles between the stands.
    for _ in range(int(rng.integers(2, 10))):
        px, py = local_to_image(cx, cy, angle, rng.uniform(-w / 2, w / 2), rng.uniform(-h / 2, h / 2))
        heading = rng.uniform(0, 2 * np.pi)
        if rng.random() < 0.6:
            placed += car(ctx, px, py, heading, margin=ctx.px(1)) is not None
        else:
            placed += large_vehicle(ctx, px, py, heading, kind="tanker" if rng.random() < 0.5 else "truck",
                                    margin=ctx.px(1)) is not None
    return placed


# --------------------------------------------------------------------------------------- tank farm
def tank_farm(ctx: SceneContext, small: bool = False) -> int:
    """Storage tanks on a grid inside a bunded pad; one or two diameters per farm.
    ``small``: one or two small tanks (a fallback where space is short)."""
    rng = ctx.rng
    if "storage-tank" not in ctx.classes:
        return 0
    d_m = float(rng.choice([rng.uniform(8, 16), rng.uniform(16, 32), rng.uniform(32, 60)], p=[0.4, 0.4, 0.2]))
    if small:
        d_m = rng.uniform(8, 14)
    side = min(ctx.width, ctx.height)
    d = min(ctx.px(d_m), 0.2 * side)
    gap = d * rng.uniform(0.3, 0.8)
    margin = ctx.px(3 if small else 6) + 0.2 * d
    # No more tanks than half the image's shorter side holds.
    fit = max(int((0.5 * side - 2 * margin + gap) / (d + gap)), 1)
    rows, cols = min(int(rng.integers(1, 4)), fit), min(int(rng.integers(2, 6)), fit + 1)
    if small:
        rows, cols = 1, int(rng.integers(1, 3))
    angle = _zone_angle(ctx, 2.0)
    for _ in range(4):
        w, h = cols * d + (cols - 1) * gap + 2 * margin, rows * d + (rows - 1) * gap + 2 * margin
        # A small farm may also stand on a quay or yard.
        spot = ctx.find_zone(w, h, angle, (LAND, PAVED) if small else (LAND,))
        if spot is not None:
            break
        rows, cols = max(rows - 1, 1), max(cols - 1, 1)
        d *= 0.85
    else:
        return 0
    cx, cy = spot
    pad = rect_corners(cx, cy, w, h, angle)
    ctx.ground.paint_polygon(pad, str(rng.choice(["soil", "sand", "concrete"])), PAVED,
                             tint=rng.uniform(0.9, 1.1) * rng.uniform(0.97, 1.03, 3))
    ctx.ground.strokes([(pad[i], pad[(i + 1) % 4]) for i in range(4)], max(ctx.px(1.5), 1.0), (200, 195, 180), 0.8)
    body = TANK_BODIES[rng.choice(len(TANK_BODIES), p=TANK_WEIGHTS)]
    floating = rng.random() < 0.4
    placed = 0
    for r in range(rows):
        for c in range(cols):
            if rng.random() < 0.08:
                continue
            dd = d * (rng.uniform(0.6, 0.8) if rng.random() < 0.15 else 1.0)
            lx = -w / 2 + margin + d / 2 + c * (d + gap)
            ly = -h / 2 + margin + d / 2 + r * (d + gap)
            px, py = local_to_image(cx, cy, angle, lx, ly)
            style = {"body": body * rng.uniform(0.95, 1.04), "roof": "floating" if floating else "fixed",
                     "depth": rng.uniform(0.12, 0.3)}
            # A circle has no orientation: DOTA annotators draw tanks axis-aligned (all 145 in P2709).
            ok = ctx.place("storage-tank", "storage-tank", px, py, dd, dd, 0.0,
                           height_m=float(np.clip(dd * ctx.gsd * 0.6, 5, 20)), style=style, margin=1.0)
            placed += ok is not None
    return placed


# ------------------------------------------------------------------------------------------ courts
def tennis_courts(ctx: SceneContext, small: bool = False) -> int:
    """One to eight courts side by side, each in its run-off area, fenced, on a common surround.

    The label is the doubles court (lines included, 23.77 x 10.97 m: DOTA's median box is 24.0 x 11.4 m);
    the run-off area (about 36 x 18 m) around it is ground.
    """
    rng = ctx.rng
    if "tennis-court" not in ctx.classes:
        return 0
    length, width = ctx.px(rng.uniform(23.77, 24.3)), ctx.px(rng.uniform(10.97, 11.4))
    surf_l, surf_w = ctx.px(rng.uniform(33, 37)), ctx.px(rng.uniform(16, 19))
    cols, rows = (1, 1) if small else (int(rng.integers(1, 5)), int(rng.integers(1, 3)))
    outer, inner = COURT_STYLES[rng.integers(len(COURT_STYLES))]
    angle = _zone_angle(ctx, 1.0)
    border = ctx.px(rng.uniform(1, 4))
    for _ in range(4):
        w, h = cols * surf_w + 2 * border, rows * surf_l + 2 * border
        spot = ctx.find_zone(w, h, angle, (LAND,))
        if spot is not None:
            break
        cols, rows = max(cols - 1, 1), max(rows - 1, 1)
    else:
        return 0
    cx, cy = spot
    zone = rect_corners(cx, cy, w, h, angle)
    tint = np.asarray(outer, np.float32) / ctx.ground.textures.base_colour("concrete")  # run-off paint
    ctx.ground.paint_polygon(zone, "concrete", PAVED, tint=tint * rng.uniform(0.97, 1.05))
    fences = []
    placed = 0
    for r in range(rows):
        for c in range(cols):
            lx = -w / 2 + border + surf_w / 2 + c * surf_w
            ly = -h / 2 + border + surf_l / 2 + r * surf_l
            fence = rect_corners(*local_to_image(cx, cy, angle, lx, ly), surf_w, surf_l, angle)
            fences += [(fence[i], fence[(i + 1) % 4]) for i in range(4)]
            px, py = local_to_image(cx, cy, angle, lx, ly)
            style = {"inner": np.asarray(inner, np.float32) * rng.uniform(0.97, 1.03)}
            placed += ctx.place("tennis-court", "tennis-court", px, py, width, length, angle, style=style,
                                margin=0.2) is not None
    ctx.ground.strokes(fences, max(ctx.px(0.25), 0.6), (45, 50, 46), 0.7)
    return placed


# ----------------------------------------------------------------------------------------- traffic
def road_traffic(ctx: SceneContext, p0, p1, width_px: float, lanes: int, density: float) -> int:
    """Vehicles driving along the lanes of a road; ``density`` is vehicles per 100 m of lane."""
    rng = ctx.rng
    seg = clip_segment(p0, p1, ctx.width, ctx.height)
    if seg is None or density <= 0:
        return 0
    a, b = seg
    length = np.hypot(*(b - a))
    u = (b - a) / max(length, 1e-9)
    n = np.array([-u[1], u[0]])
    placed = 0
    for lane in range(lanes):
        offset = -width_px / 2 + (lane + 0.5) * width_px / lanes
        forward = lane >= lanes / 2
        angle = np.arctan2(u[0], -u[1]) + (0.0 if forward else np.pi)
        t = rng.exponential(ctx.px(100 / density))
        while t < length:
            big = rng.random() < 0.12
            veh_len = ctx.px(14 if big else 4.6)
            c = a + u * t + n * (offset + rng.normal(0, ctx.px(0.2)))
            if big:
                ok = large_vehicle(ctx, c[0], c[1], angle + np.deg2rad(rng.normal(0, 1)), surfaces=(ROAD,))
            else:
                ok = car(ctx, c[0], c[1], angle + np.deg2rad(rng.normal(0, 1.5)), surfaces=(ROAD,))
            placed += ok is not None
            t += veh_len + ctx.px(2) + rng.exponential(ctx.px(100 / density))
    return placed



def dock_trucks(ctx: SceneContext, building) -> int:
    """Trucks backed up to the loading docks along one long side of a warehouse, fronts outwards, on a
    paved yard in front of it."""
    rng = ctx.rng
    along_y = building.h >= building.w
    side = rng.choice([-1, 1])
    length = rng.uniform(13, 17)
    pitch = ctx.px(rng.uniform(3.8, 5.0))
    span = building.h if along_y else building.w
    depth = ctx.px(length + 5)
    half = (building.w if along_y else building.h) / 2
    yard = (side * (half + depth / 2), 0.0) if along_y else (0.0, side * (half + depth / 2))
    yx, yy = local_to_image(building.cx, building.cy, building.angle, *yard)
    yw, yh = (depth, span) if along_y else (span, depth)
    corners = rect_corners(yx, yy, yw, yh, building.angle)
    if not (ctx.ground.surface_at(corners) == LAND).all() or not ctx.occupancy.fits(corners, 0.0):
        return 0
    ctx.ground.paint_polygon(corners, "asphalt", PAVED)
    placed = 0
    for t in (np.arange(int(span / pitch)) - (int(span / pitch) - 1) / 2) * pitch:
        if rng.random() > 0.7:
            continue
        off = side * (half + ctx.px(length / 2 + 1.0))
        lx, ly = (off, t) if along_y else (t, off)
        px, py = local_to_image(building.cx, building.cy, building.angle, lx, ly)
        # Front away from the building: along the local +-x axis (angle +-90 deg) or +-y axis (180 / 0 deg).
        heading = building.angle + (side * np.pi / 2 if along_y else (np.pi if side > 0 else 0.0))
        placed += large_vehicle(ctx, px, py, heading + np.deg2rad(rng.normal(0, 1.5)), kind="truck",
                                length_m=length * rng.uniform(0.95, 1.0), margin=ctx.px(0.4)) is not None
    return placed


def scattered_vehicles(ctx: SceneContext, label: str, count: int, surfaces=(ROAD, PAVED)) -> int:
    """Vehicles on random road or paved pixels, aligned with the scene grid (roads and lots follow it)."""
    rng = ctx.rng
    cells = np.argwhere(np.isin(ctx.ground.surface[::4, ::4], surfaces)) * 4
    placed = 0
    for _ in range(count * 20):
        if placed >= count or not len(cells):
            break
        y, x = cells[rng.integers(len(cells))]
        angle = ctx.grid_angle + rng.integers(4) * np.pi / 2 + np.deg2rad(rng.normal(0, 2))
        fn = car if label == "small-vehicle" else large_vehicle
        placed += fn(ctx, x, y, angle, surfaces=surfaces, margin=ctx.px(0.5)) is not None
    return placed
