"""Exact IoU / IoF of oriented boxes and convex quadrilaterals, vectorised over all pairs.

Intersection of two convex quadrilaterals A and B (the mmcv ``box_iou_rotated`` construction, batched):
the vertices of A n B are exactly (i) the crossings of an edge of A with an edge of B, (ii) the vertices of
A inside B and (iii) the vertices of B inside A. All 16 + 4 + 4 candidates are computed for every pair at
once, the valid ones are sorted by angle around their mean (which lies inside the convex intersection) and
the shoelace formula gives the area. There is no Python loop over pairs: pairs are processed as tensors in
chunks of ``PAIR_CHUNK`` so memory stays bounded.

Prefilter: only pairs whose axis-aligned boxes overlap with positive area are computed exactly; all others
are 0. They are found by a sort-and-sweep, so an N x M query with few overlaps (a whole DOTA image with
tens of thousands of boxes) costs O((N + M) log(N + M) + overlapping pairs), not N*M.

Accuracy: float64 throughout, coordinates shifted to the pair's mean centre. Boundary tests use a
tolerance of 1e-9 x the pair's longest edge, so touching boxes give 0 and identical boxes give 1 up to
~1e-12. Degenerate boxes (area <= 1e-12 x squared extent, e.g. zero width) give IoU = IoF = 0, never NaN.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._interop import check_finite, check_version, is_torch, restore, result_dtype, to_tensor
from .obb import _obb2poly_t

PAIR_CHUNK = 1 << 14  # pairs per exact-intersection batch (~40 MB of float64 temporaries)
SWEEP_CHUNK = 1 << 21  # candidate pairs per chunk of the axis-aligned sweep
_TOL = 1e-9  # relative boundary tolerance
_DEGENERATE = 1e-12  # relative area below which a box counts as degenerate


@dataclass
class PreparedBoxes:
    """Boxes in the form the exact intersection needs.

    quads: (N, 4, 2) float64, counter-clockwise in the (x, y) coordinate sense (positive shoelace area).
    areas: (N,) float64, 0 for degenerate boxes.
    hbb: (N, 4) float64 axis-aligned ``x1 y1 x2 y2``.
    ok: (N,) bool, False for degenerate boxes (they never intersect anything).
    """

    quads: torch.Tensor
    areas: torch.Tensor
    hbb: torch.Tensor
    ok: torch.Tensor

    def __len__(self) -> int:
        return self.quads.shape[0]


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _signed_area(quads: torch.Tensor) -> torch.Tensor:
    return 0.5 * _cross(quads, torch.roll(quads, -1, dims=-2)).sum(-1)


def _nonconvex_mask(quads: torch.Tensor) -> torch.Tensor:
    """(N,) True for quadrilaterals that are not convex (concave or self-intersecting)."""
    edges = torch.roll(quads, -1, dims=-2) - quads
    prev = torch.roll(edges, 1, dims=-2)
    turn = _cross(prev, edges)
    tol = _TOL * torch.linalg.vector_norm(prev, dim=-1) * torch.linalg.vector_norm(edges, dim=-1)
    return ~((turn >= -tol).all(-1) | (turn <= tol).all(-1))


def _convex_hull_quads(quads: torch.Tensor) -> torch.Tensor:
    """Convex hull of each 4-point set, still as 4 points (a triangle repeats one vertex).

    Sorting by angle around the mean (inside the hull) gives a star-shaped polygon whose only possible
    reflex vertex is a point inside the hull; replacing it by its predecessor leaves the hull.
    """
    rel = quads - quads.mean(-2, keepdim=True)
    order = torch.atan2(rel[..., 1], rel[..., 0]).argsort(-1)
    q = quads.gather(-2, order[..., None].expand(-1, -1, 2))
    prev, nxt = torch.roll(q, 1, dims=-2), torch.roll(q, -1, dims=-2)
    reflex = _cross(q - prev, nxt - q) < 0
    return torch.where(reflex[..., None], prev, q)


def _prepare(quads: torch.Tensor) -> PreparedBoxes:
    # Shoelace on centred corners: at DOTA coordinates (~1e4 px) the raw products cancel to ~1e-8 px^2.
    signed = _signed_area(quads - quads.mean(-2, keepdim=True))
    quads = torch.where((signed < 0)[:, None, None], quads.flip(-2), quads)
    lo, hi = quads.min(-2).values, quads.max(-2).values
    extent2 = ((hi - lo) ** 2).sum(-1)
    areas = signed.abs()
    ok = areas > _DEGENERATE * extent2
    return PreparedBoxes(quads, torch.where(ok, areas, torch.zeros_like(areas)), torch.cat([lo, hi], -1), ok)


def prepare_boxes(boxes, fn: str, name: str, *, nonconvex: str = "raise", device=None) -> PreparedBoxes:
    """Validate (N, 5) obbs or (N, 8) quadrilaterals and bring them to :class:`PreparedBoxes` (float64).

    ``nonconvex`` (quadrilaterals only): 'raise' -> ValueError naming the rows, 'hull' -> use the convex
    hull of the four points.
    """
    shape = tuple(boxes.shape) if hasattr(boxes, "shape") else tuple(torch.as_tensor(boxes).shape)
    if len(shape) != 2 or shape[1] not in (5, 8):
        raise ValueError(f"{fn}: {name} must be (N, 5) obbs or (N, 8) polygons, got shape {shape}")
    t = to_tensor(boxes, dtype=torch.float64, device=device, name=name)
    check_finite(t, name, fn)
    if shape[1] == 5:
        if bool((t[:, 2:4] < 0).any()):
            bad = torch.nonzero((t[:, 2:4] < 0).any(-1))[:5, 0].tolist()
            raise ValueError(f"{fn}: {name} has negative width or height (first bad rows: {bad})")
        return _prepare(_obb2poly_t(t).reshape(-1, 4, 2))
    quads = t.reshape(-1, 4, 2)
    bad = _nonconvex_mask(quads)
    if bool(bad.any()):
        if nonconvex == "hull":
            quads = torch.where(bad[:, None, None], _convex_hull_quads(quads), quads)
        elif nonconvex == "raise":
            rows = torch.nonzero(bad)[:10, 0].tolist()
            raise ValueError(f"{fn}: {name} has {int(bad.sum())} non-convex or self-intersecting quadrilaterals "
                             f"(first rows: {rows}); pass nonconvex='hull' to use their convex hulls")
        else:
            raise ValueError(f"{fn}: nonconvex must be 'raise' or 'hull', got {nonconvex!r}")
    return _prepare(quads)


def intersection_area(pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
    """Areas of A n B for (P, 4, 2) counter-clockwise convex quads ``pa``, ``pb`` (paired rows) -> (P,)."""
    ref = (pa.mean(1) + pb.mean(1)) / 2  # shift to the pair's centre: small coordinates, small rounding
    pa, pb = pa - ref[:, None], pb - ref[:, None]
    ea, eb = torch.roll(pa, -1, dims=1) - pa, torch.roll(pb, -1, dims=1) - pb
    la, lb = torch.linalg.vector_norm(ea, dim=-1), torch.linalg.vector_norm(eb, dim=-1)  # (P, 4)
    tol = _TOL * torch.maximum(la.max(1).values, lb.max(1).values)[:, None, None]  # distance tolerance

    # (i) edge i of A (pa_i + t r) crosses edge j of B (pb_j + u s): 16 candidates per pair
    r, s = ea[:, :, None], eb[:, None]  # (P, 4, 1, 2), (P, 1, 4, 2)
    qp = pb[:, None] - pa[:, :, None]  # (P, 4, 4, 2)
    den = _cross(r, s)
    parallel = den.abs() <= 1e-12 * la[:, :, None] * lb[:, None, :]
    safe = torch.where(parallel, torch.ones_like(den), den)
    t, u = _cross(qp, s) / safe, _cross(qp, r) / safe
    et = tol / la[:, :, None].clamp_min(1e-300)
    eu = tol / lb[:, None, :].clamp_min(1e-300)
    cross_ok = ~parallel & (t >= -et) & (t <= 1 + et) & (u >= -eu) & (u <= 1 + eu)
    cross_pts = (pa[:, :, None] + t[..., None] * r).reshape(-1, 16, 2)

    # (ii)/(iii) vertices of one quad on the inner side of (or within tol of) every edge of the other
    da = _cross(eb[:, None], pa[:, :, None] - pb[:, None])  # (P, 4 vertices of A, 4 edges of B)
    a_in = (da >= -tol * lb[:, None, :]).all(-1)
    db = _cross(ea[:, None], pb[:, :, None] - pa[:, None])
    b_in = (db >= -tol * la[:, None, :]).all(-1)

    pts = torch.cat([cross_pts, pa, pb], dim=1)  # (P, 24, 2)
    mask = torch.cat([cross_ok.reshape(-1, 16), a_in, b_in], dim=1)
    count = mask.sum(1)
    centre = (pts * mask[..., None]).sum(1) / count.clamp_min(1)[:, None]
    rel = pts - centre[:, None]
    angle = torch.where(mask, torch.atan2(rel[..., 1], rel[..., 0]), torch.full_like(rel[..., 0], 10.0))
    order = angle.argsort(1)
    sp = pts.gather(1, order[..., None].expand(-1, -1, 2))
    sm = mask.gather(1, order)
    # Invalid slots (sorted last) repeat the first vertex: the extra edges have zero length, zero area.
    sp = torch.where(sm[..., None], sp, sp[:, :1])
    area = 0.5 * _cross(sp, torch.roll(sp, -1, dims=1)).sum(1).abs()
    return torch.where(count >= 3, area, torch.zeros_like(area))


def _hbb_overlap(ha: torch.Tensor, hb: torch.Tensor) -> torch.Tensor:
    """Row-wise: do the ``x1 y1 x2 y2`` boxes overlap with positive area (touching does not count)?"""
    return (ha[:, 0] < hb[:, 2]) & (hb[:, 0] < ha[:, 2]) & (ha[:, 1] < hb[:, 3]) & (hb[:, 1] < ha[:, 3])


def _interval_hits(lo_a, hi_a, lo_b, strict: bool):
    """All (i, j) with lo_a[i] <= lo_b[j] < hi_a[i] (``strict``: lo_a[i] < lo_b[j] < hi_a[i]), as ranges.

    Returns (order_b, starts, counts): row i's partners are order_b[starts[i] : starts[i] + counts[i]].
    """
    lo_b_sorted, order_b = torch.sort(lo_b)
    starts = torch.searchsorted(lo_b_sorted, lo_a, side="right" if strict else "left")
    counts = torch.searchsorted(lo_b_sorted, hi_a, side="left") - starts
    return order_b, starts, counts.clamp_min(0)


def _expand_ranges(order_b, starts, counts):
    """Yield (ii, jj) chunks of at most ~SWEEP_CHUNK pairs from per-row ranges of ``order_b``."""
    csum = torch.cumsum(counts, 0)
    total = int(csum[-1]) if csum.numel() else 0
    row, done, n = 0, 0, counts.numel()
    while done < total:
        # Rows [row, end) whose ranges fit in the chunk; always at least one row.
        end = int(torch.searchsorted(csum, torch.tensor(done + SWEEP_CHUNK, device=csum.device), side="right"))
        end = min(max(end, row + 1), n)
        cnt = counts[row:end]
        rows = torch.repeat_interleave(torch.arange(row, end, device=counts.device), cnt)
        first = torch.repeat_interleave(csum[row:end] - cnt, cnt)
        pos = starts[rows] + torch.arange(first.numel(), device=counts.device) + (done - first)
        yield rows, order_b[pos]
        done, row = int(csum[end - 1]), end


def candidate_pairs(a: PreparedBoxes, b: PreparedBoxes, *, upper: bool = False, groups_a=None, groups_b=None):
    """Index pairs (ii, jj) whose axis-aligned boxes overlap with positive area, both boxes non-degenerate.

    upper: keep only ii < jj (a and b are the same set). groups_a/groups_b: (N,)/(M,) int tensors; keep
    only pairs in the same group (class-wise NMS).

    Sort-and-sweep along one axis instead of an N x M test: intervals [a1, a2) and [b1, b2) overlap iff
    a1 <= b1 < a2 or b1 < a1 < b2 (disjoint cases), each a range query in a sorted array. The cost is
    the number of pairs overlapping along the sweep axis, and the axis with fewer such pairs is used.
    """
    n, m = len(a), len(b)
    dev = a.quads.device
    if n == 0 or m == 0:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return empty, empty
    best = None
    for axis in (0, 1):
        a1, a2 = a.hbb[:, axis].contiguous(), a.hbb[:, axis + 2].contiguous()
        b1, b2 = b.hbb[:, axis].contiguous(), b.hbb[:, axis + 2].contiguous()
        case1 = _interval_hits(a1, a2, b1, strict=False)  # b1 in [a1, a2): rows are boxes of a
        case2 = _interval_hits(b1, b2, a1, strict=True)  # a1 in (b1, b2): rows are boxes of b
        work = int(case1[2].sum()) + int(case2[2].sum())
        if best is None or work < best[0]:
            best = (work, case1, case2)
    out_i, out_j = [], []
    for swap, case in ((False, best[1]), (True, best[2])):
        for rows, partners in _expand_ranges(*case):
            ii, jj = (partners, rows) if swap else (rows, partners)
            hit = _hbb_overlap(a.hbb[ii], b.hbb[jj]) & a.ok[ii] & b.ok[jj]
            if groups_a is not None:
                hit &= groups_a[ii] == groups_b[jj]
            if upper:
                hit &= jj > ii
            out_i.append(ii[hit])
            out_j.append(jj[hit])
    if not out_i:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return empty, empty
    return torch.cat(out_i), torch.cat(out_j)


def pair_overlaps(a: PreparedBoxes, b: PreparedBoxes, ii: torch.Tensor, jj: torch.Tensor, mode: str = "iou"):
    """IoU (inter / union) or IoF (inter / area of a) for the index pairs (ii, jj) -> (P,) float64."""
    if mode not in ("iou", "iof"):
        raise ValueError(f"mode must be 'iou' or 'iof', got {mode!r}")
    vals = []
    for start in range(0, ii.numel(), PAIR_CHUNK):
        i, j = ii[start:start + PAIR_CHUNK], jj[start:start + PAIR_CHUNK]
        area_a, area_b = a.areas[i], b.areas[j]
        inter = intersection_area(a.quads[i], b.quads[j])
        inter = torch.minimum(inter, torch.minimum(area_a, area_b))
        denom = area_a + area_b - inter if mode == "iou" else area_a
        ok = (denom > 0) & a.ok[i] & b.ok[j]
        vals.append(torch.where(ok, inter / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(inter)))
    return torch.cat(vals) if vals else a.areas.new_zeros(0)


def _box_overlaps(a, b, mode: str, aligned: bool, fn: str, nonconvex: str, expect: int):
    if mode not in ("iou", "iof"):
        raise ValueError(f"{fn}: mode must be 'iou' or 'iof', got {mode!r}")
    for name, x in (("a", a), ("b", b)):
        shape = tuple(x.shape) if hasattr(x, "shape") else tuple(torch.as_tensor(x).shape)
        if len(shape) != 2 or shape[1] != expect:
            raise ValueError(f"{fn}: {name} must have shape (N, {expect}), got {shape}")
    device = next((x.device for x in (a, b) if isinstance(x, torch.Tensor)), None)
    pa = prepare_boxes(a, fn, "a", nonconvex=nonconvex, device=device)
    pb = prepare_boxes(b, fn, "b", nonconvex=nonconvex, device=device)
    if aligned:
        if len(pa) != len(pb):
            raise ValueError(f"{fn}: aligned=True needs as many boxes in a as in b, got {len(pa)} and {len(pb)}")
        idx = torch.arange(len(pa), device=pa.quads.device)
        hit = _hbb_overlap(pa.hbb, pb.hbb) & pa.ok & pb.ok
        out = pa.areas.new_zeros(len(pa))
        out[hit] = pair_overlaps(pa, pb, idx[hit], idx[hit], mode)
    else:
        ii, jj = candidate_pairs(pa, pb)
        out = pa.areas.new_zeros(len(pa), len(pb))
        out[ii, jj] = pair_overlaps(pa, pb, ii, jj, mode)
    return restore(out, is_torch(a, b), result_dtype(a, b))


def obb_iou(a, b, mode: str = "iou", version: str = "le90", aligned: bool = False):
    """Exact overlaps of oriented boxes (cx, cy, w, h, theta).

    Args:
        a: (N, 5), b: (M, 5) obbs, numpy or torch (torch result on the tensors' device).
        mode: 'iou' = inter / union, 'iof' = inter / area(a).
        version: the angle version of the inputs; the overlap does not depend on it (any (w, h, theta)
            names a rectangle), it is checked only so call sites say what they pass.
        aligned: False -> (N, M) matrix; True -> (N,) overlaps of row i of a with row i of b.

    Returns:
        Overlaps in the inputs' float dtype (float64 for integer inputs), computed in float64.
    """
    check_version(version)
    return _box_overlaps(a, b, mode, aligned, "obb_iou", "raise", 5)


def poly_iou(a, b, mode: str = "iou", aligned: bool = False, nonconvex: str = "raise"):
    """Exact overlaps of convex quadrilaterals ``x1 y1 .. x4 y4`` (either orientation).

    Args:
        a: (N, 8), b: (M, 8). mode, aligned: as :func:`obb_iou`.
        nonconvex: 'raise' (default) rejects concave or self-intersecting quadrilaterals with an error
            naming the rows; 'hull' replaces them by the convex hull of their four points (which is not
            what the DOTA devkit's general-polygon IoU computes for such shapes).
    """
    return _box_overlaps(a, b, mode, aligned, "poly_iou", nonconvex, 8)
