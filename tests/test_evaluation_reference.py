"""Independent, transcription-style references of the DOTA devkit and mmrotate evaluation, and their checks.

The official devkit (python2-era scripts + a SWIG ``polyiou`` extension) is not installable here, so the
exactness tests of ``mutdet_core.evaluation`` compare against these straightforward transcriptions:

- ``ref_voc_eval``: ``dota_evaluation_task1.py::voc_eval`` line by line (per-detection loop, HBB prefilter,
  ``ovmax > ovthresh``, difficult handling, ``voc_ap``), with a pluggable polygon IoU and argsort.
- ``ref_iou_shapely``: polygon IoU by shapely on the 4-point polygons as given (valid polygons only).
- ``ref_iou_polyiou``: a scalar transcription of ``polyiou.cpp`` (for non-convex quads and last bits).
- ``ref_argsort``: numpy's classic introsort ``aquicksort`` (the devkit's tie order), scalar.
- ``ref_result_merge``: ``ResultMerge.py::mergebase`` with ``py_cpu_nms_poly``.
- ``ref_mmrotate_eval``: mmrotate ``eval_rbbox_map`` / ``tpfp_default`` / mmdet ``average_precision``.

Nothing here imports ``mutdet_core.evaluation``. The tests at the bottom check the references themselves.
"""
from __future__ import annotations

import re

import numpy as np
from shapely.geometry import Polygon

# ----------------------------------------------------------------------------------------------- IoU


def ref_iou_shapely(p, q) -> float:
    a = Polygon(np.asarray(p, dtype=float).reshape(4, 2))
    b = Polygon(np.asarray(q, dtype=float).reshape(4, 2))
    inter = a.intersection(b).area
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


_EPS = 1e-8


def _sig(d):
    return (d > _EPS) - (d < -_EPS)


def _cross(o, a, b):
    return (a[0] - o[0]) * (b[1] - o[1]) - (b[0] - o[0]) * (a[1] - o[1])


def _area(ps):
    res = 0.0
    for i in range(len(ps)):
        q = ps[(i + 1) % len(ps)]
        res += ps[i][0] * q[1] - ps[i][1] * q[0]
    return res / 2.0


def _eq(p, q):
    return _sig(p[0] - q[0]) == 0 and _sig(p[1] - q[1]) == 0


def _polygon_cut(p, a, b):
    pp = []
    for i in range(len(p)):
        c, d = p[i], p[(i + 1) % len(p)]
        if _sig(_cross(a, b, c)) > 0:
            pp.append(c)
        if _sig(_cross(a, b, c)) != _sig(_cross(a, b, d)):
            s1, s2 = _cross(a, b, c), _cross(a, b, d)
            if _sig(s2 - s1) == 0:
                pp.append(c)  # C++: stale buffer point (undefined); see mutdet_core/evaluation/polyiou.py
            else:
                pp.append(((c[0] * s2 - d[0] * s1) / (s2 - s1), (c[1] * s2 - d[1] * s1) / (s2 - s1)))
    out = [pp[i] for i in range(len(pp)) if i == 0 or not _eq(pp[i], pp[i - 1])]
    while len(out) > 1 and _eq(out[-1], out[0]):
        out.pop()
    return out


def _tri_inter(a, b, c, d):
    o = (0.0, 0.0)
    s1, s2 = _sig(_cross(o, a, b)), _sig(_cross(o, c, d))
    if s1 == 0 or s2 == 0:
        return 0.0
    if s1 == -1:
        a, b = b, a
    if s2 == -1:
        c, d = d, c
    p = _polygon_cut([o, a, b], o, c)
    p = _polygon_cut(p, c, d)
    p = _polygon_cut(p, d, o)
    res = abs(_area(p))
    return -res if s1 * s2 == -1 else res


def ref_iou_polyiou(p, q) -> float:
    """``polyiou.iou_poly(p, q)`` of the DOTA devkit, transcribed to scalar Python."""
    ps1 = [(float(p[2 * i]), float(p[2 * i + 1])) for i in range(4)]
    ps2 = [(float(q[2 * i]), float(q[2 * i + 1])) for i in range(4)]
    if _area(ps1) < 0:
        ps1.reverse()
    if _area(ps2) < 0:
        ps2.reverse()
    inter = 0.0
    for i in range(4):
        for j in range(4):
            inter += _tri_inter(ps1[i], ps1[(i + 1) % 4], ps2[j], ps2[(j + 1) % 4])
    union = abs(_area(ps1)) + abs(_area(ps2)) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(inter) / np.float64(union))


# ------------------------------------------------------------------------------------------- argsort


def _less(a, b):
    return a < b or (b != b and a == a)


def _aheapsort(v, t, lo, n):
    a = lambda k: t[lo - 1 + k]  # noqa: E731  (1-based heap view)

    def put(k, val):
        t[lo - 1 + k] = val

    l = n >> 1
    while l > 0:
        tmp, i, j = a(l), l, l << 1
        while j <= n:
            if j < n and _less(v[a(j)], v[a(j + 1)]):
                j += 1
            if _less(v[tmp], v[a(j)]):
                put(i, a(j))
                i, j = j, j + j
            else:
                break
        put(i, tmp)
        l -= 1
    while n > 1:
        tmp = a(n)
        put(n, a(1))
        n -= 1
        i, j = 1, 2
        while j <= n:
            if j < n and _less(v[a(j)], v[a(j + 1)]):
                j += 1
            if _less(v[tmp], v[a(j)]):
                put(i, a(j))
                i, j = j, j + j
            else:
                break
        put(i, tmp)


def ref_argsort(values) -> np.ndarray:
    """numpy's classic ``aquicksort_`` (introsort) permutation, scalar transcription."""
    v = [float(x) for x in values]
    num = len(v)
    t = list(range(num))
    if num > 1:
        pl, pr, stack = 0, num - 1, []
        cdepth = (num.bit_length() - 1) * 2
        while True:
            if cdepth < 0:
                _aheapsort(v, t, pl, pr - pl + 1)
            else:
                while pr - pl > 15:
                    pm = pl + ((pr - pl) >> 1)
                    if _less(v[t[pm]], v[t[pl]]):
                        t[pm], t[pl] = t[pl], t[pm]
                    if _less(v[t[pr]], v[t[pm]]):
                        t[pr], t[pm] = t[pm], t[pr]
                    if _less(v[t[pm]], v[t[pl]]):
                        t[pm], t[pl] = t[pl], t[pm]
                    vp = v[t[pm]]
                    pi, pj = pl, pr - 1
                    t[pm], t[pj] = t[pj], t[pm]
                    while True:
                        pi += 1
                        while _less(v[t[pi]], vp):
                            pi += 1
                        pj -= 1
                        while _less(vp, v[t[pj]]):
                            pj -= 1
                        if pi >= pj:
                            break
                        t[pi], t[pj] = t[pj], t[pi]
                    t[pi], t[pr - 1] = t[pr - 1], t[pi]
                    if pi - pl < pr - pi:
                        stack.append([pi + 1, pr])
                        pr = pi - 1
                    else:
                        stack.append([pl, pi - 1])
                        pl = pi + 1
                    cdepth -= 1
                    stack[-1].append(cdepth)
                for pi in range(pl + 1, pr + 1):
                    vi, pj, pk = t[pi], pi, pi - 1
                    vp = v[vi]
                    while pj > pl and _less(vp, v[t[pk]]):
                        t[pj] = t[pk]
                        pj, pk = pj - 1, pk - 1
                    t[pj] = vi
            if not stack:
                break
            pl, pr, cdepth = stack.pop()
    return np.asarray(t, dtype=np.int64)


# ------------------------------------------------------------------------------------------ voc_eval


def ref_parse_gt(filename):
    objects = []
    with open(filename) as f:
        for line in f:
            s = line.strip().split(" ")
            if len(s) < 9:
                continue
            obj = {"name": s[8], "difficult": int(s[9]) if len(s) == 10 else 0, "bbox": [float(x) for x in s[:8]]}
            objects.append(obj)
    return objects


def ref_voc_ap(rec, prec, use_07_metric=True):
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def ref_voc_eval(detpath, annopath, imagenames, classname, ovthresh=0.5, use_07_metric=True,
                 iou=ref_iou_shapely, argsort=ref_argsort):
    """``voc_eval`` of dota_evaluation_task1.py; returns the AP (0 where the devkit would crash or divide by 0)."""
    recs = {name: ref_parse_gt(annopath.format(name)) for name in imagenames}
    class_recs, npos = {}, 0
    for name in imagenames:
        R = [obj for obj in recs[name] if obj["name"] == classname]
        bbox = np.array([x["bbox"] for x in R])
        difficult = np.array([x["difficult"] for x in R]).astype(bool)
        npos = npos + sum(~difficult)
        class_recs[name] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(R)}
    with open(detpath.format(classname)) as f:
        splitlines = [x.strip().split(" ") for x in f.readlines() if x.strip()]
    if not splitlines or npos == 0:
        return 0.0
    image_ids = [x[0] for x in splitlines]
    confidence = np.array([float(x[1]) for x in splitlines])
    BB = np.array([[float(z) for z in x[2:]] for x in splitlines])
    sorted_ind = argsort(-confidence)
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(np.min(BBGT[:, 0::2], axis=1), np.min(bb[0::2]))
            iymin = np.maximum(np.min(BBGT[:, 1::2], axis=1), np.min(bb[1::2]))
            ixmax = np.minimum(np.max(BBGT[:, 0::2], axis=1), np.max(bb[0::2]))
            iymax = np.minimum(np.max(BBGT[:, 1::2], axis=1), np.max(bb[1::2]))
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            keep_index = np.where(iw * ih > 0)[0]
            if len(keep_index) > 0:
                overlaps = [iou(BBGT[k], bb) for k in keep_index]
                ovmax = np.max(overlaps)
                jmax = keep_index[np.argmax(overlaps)]
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return float(ref_voc_ap(rec, prec, use_07_metric))


# --------------------------------------------------------------------------------- mmrotate (0.x)


def ref_mmrotate_eval(detpath, annopath, imagenames, classname, iou_thr=0.5, use_07_metric=True,
                      iou=ref_iou_shapely, argsort=ref_argsort):
    """``eval_rbbox_map`` for one class: per-image ``tpfp_default`` (nothing ignored, ``>=``), ranking of
    the concatenation in image order, float32 eps, mmdet ``average_precision``. Returns (AP, num_gts)."""
    with open(detpath.format(classname)) as f:
        lines = [x.strip().split(" ") for x in f.readlines() if x.strip()]
    tps, fps, scores_all, num_gts = [], [], [], 0
    for name in imagenames:
        objects = ref_parse_gt(annopath.format(name))
        gts = np.array([o["bbox"] for o in objects if o["name"] == classname]).reshape(-1, 8)
        num_gts += len(gts)
        dets = [(float(x[1]), [float(z) for z in x[2:]]) for x in lines if x[0] == name]
        scores = np.array([d[0] for d in dets])
        tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
        if len(gts) == 0:
            fp[:] = 1
        elif len(dets):
            ious = np.array([[iou(g, d[1]) for g in gts] for d in dets])
            ious_max, ious_argmax = ious.max(axis=1), ious.argmax(axis=1)
            covered = np.zeros(len(gts), dtype=bool)
            for i in argsort(-scores):
                if ious_max[i] >= iou_thr:
                    if not covered[ious_argmax[i]]:
                        covered[ious_argmax[i]] = True
                        tp[i] = 1
                    else:
                        fp[i] = 1
                else:
                    fp[i] = 1
        tps.append(tp)
        fps.append(fp)
        scores_all.append(scores)
    scores = np.concatenate(scores_all) if scores_all else np.zeros(0)
    order = argsort(-scores)
    tp, fp = np.cumsum(np.concatenate(tps)[order]), np.cumsum(np.concatenate(fps)[order])
    eps = np.finfo(np.float32).eps
    recalls = tp / np.maximum(num_gts, eps)
    precisions = tp / np.maximum(tp + fp, eps)
    if use_07_metric:
        ap = 0.0
        for thr in np.arange(0, 1 + 1e-3, 0.1):
            precs = precisions[recalls >= thr]
            ap += precs.max() if precs.size > 0 else 0
        return float(ap / 11), num_gts
    mrec = np.hstack(([0.0], recalls, [1.0]))
    mpre = np.hstack(([0.0], precisions, [0.0]))
    for i in range(mpre.shape[0] - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    ind = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[ind + 1] - mrec[ind]) * mpre[ind + 1])), num_gts


# ------------------------------------------------------------------------------------------- merge


def ref_py_cpu_nms_poly(dets, thresh, iou=ref_iou_polyiou, argsort=ref_argsort):
    scores = dets[:, 8]
    order = argsort(scores)[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        ovr = np.array([iou(dets[i][:8], dets[j][:8]) for j in order[1:]])
        inds = np.where(ovr <= thresh)[0]
        order = order[inds + 1]
    return keep


def ref_result_merge(lines, nms_thresh, iou=ref_iou_polyiou, argsort=ref_argsort):
    """``ResultMerge.py::mergebase`` on one class file's lines -> list of (image, score, poly(8))."""
    nameboxdict = {}
    for line in lines:
        s = line.strip().split(" ")
        sub = s[0]
        ori = sub.split("__")[0]
        x, y = (int(v) for v in re.findall(r"\d+", re.findall(r"__\d+___\d+", sub)[0]))
        rate = re.findall(r"__([\d+\.]+)__\d+___", sub)[0]
        poly = [float(v) for v in s[2:]]
        det = [float(poly[i] + (x if i % 2 == 0 else y)) / float(rate) for i in range(8)] + [float(s[1])]
        nameboxdict.setdefault(ori, []).append(det)
    out = []
    for name, dets in nameboxdict.items():
        for k in ref_py_cpu_nms_poly(np.array(dets), nms_thresh, iou, argsort):
            out.append((name, dets[k][8], np.array(dets[k][:8])))
    return out


# ------------------------------------------------------------------------- checks of the references


def _rects(c, w, h, t):
    dx = np.stack([np.cos(t), np.sin(t)], 1) * w[:, None] / 2
    dy = np.stack([-np.sin(t), np.cos(t)], 1) * h[:, None] / 2
    return np.stack([c - dx - dy, c + dx - dy, c + dx + dy, c - dx + dy], 1).reshape(len(c), 8)


def random_rect_pairs(rng, k, center_range=2000.0, jitter=0.1):
    """(k, 8) rotated rectangles and jittered copies (centre, size and angle perturbed by ``jitter``)."""
    c = rng.uniform(0, center_range, (k, 2))
    w, h, t = rng.uniform(2, 150, k), rng.uniform(2, 80, k), rng.uniform(-np.pi, np.pi, k)
    s = np.maximum(w, h)[:, None]
    q = _rects(c + rng.normal(0, jitter, (k, 2)) * s, w * rng.uniform(1 - jitter, 1 + jitter, k),
               h * rng.uniform(1 - jitter, 1 + jitter, k), t + rng.normal(0, jitter, k))
    return _rects(c, w, h, t), q


def test_reference_polyiou_agrees_with_shapely_on_convex_quads():
    rng = np.random.default_rng(0)
    p, q = random_rect_pairs(rng, 300)
    got = np.array([ref_iou_polyiou(a, b) for a, b in zip(p, q)])
    want = np.array([ref_iou_shapely(a, b) for a, b in zip(p, q)])
    assert np.median(got) > 0.5  # real overlaps, not a vacuous comparison of zeros
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_reference_polyiou_on_bowtie_uses_signed_lobes():
    # A bow-tie's two unit lobes have winding numbers +1 and -1: devkit area 0, intersection with the
    # square = 1 - 1 = 0, intersection with itself = 1 + 1 = 2, so IoU = 2 / (0 + 0 - 2) = -1.
    bowtie = [0, 0, 2, 2, 2, 0, 0, 2]
    square = [0, 0, 2, 0, 2, 2, 0, 2]
    assert ref_iou_polyiou(square, bowtie) == 0.0
    assert ref_iou_polyiou(bowtie, bowtie) == -1.0


def test_reference_argsort_sorts_and_matches_stable_without_ties():
    rng = np.random.default_rng(1)
    for n in (0, 1, 2, 15, 16, 17, 100, 3000):
        x = rng.random(n)
        np.testing.assert_array_equal(ref_argsort(x), np.argsort(x, kind="stable"))
        x = np.round(rng.random(n), 1)
        assert (np.diff(x[ref_argsort(x)]) >= 0).all()
