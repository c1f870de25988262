"""Score ordering exactly as the DOTA devkit saw it: numpy's classic introsort ``argsort``.

Detection scores tie a lot (Task1 files often carry 3 decimals; the devkit's own example merged files have
hundreds of ``1.0``), and the order of tied detections changes both the VOC AP (precision inside a tie
group) and which box survives NMS. The devkit sorts with ``np.argsort(-confidence)`` (evaluation) and
``scores.argsort()[::-1]`` (merging), i.e. numpy's default ``kind='quicksort'``, which is *not stable*.
For years that was numpy's introsort (median-of-3 quicksort, insertion sort below 16 elements, heapsort
past a depth limit). Since numpy 1.25 the same call dispatches to a SIMD sort on AVX-512 (and later AVX2)
CPUs, which orders ties differently: the devkit's results now depend on the machine it runs on.

We fix the order to the classic introsort, transcribed here from numpy's ``npysort/quicksort.cpp``
(``aquicksort_`` / ``aheapsort_``). Evidence that this is the devkit's order: with it, the devkit merge
reproduces the example ``merged_dets`` files of the DOTA devkit line for line, which neither a stable sort
nor this machine's ``np.argsort`` does (tests/test_merge.py). Without ties every correct sort gives the same
permutation, so arrays without ties take ``np.argsort(kind='stable')``; only arrays with ties pay for the
Python loop (~0.5 s per 100k elements).
"""
from __future__ import annotations

import numpy as np

SMALL_QUICKSORT = 15  # numpy: partitions larger than this are split, smaller ones insertion-sorted


def _heapsort(keys: list, perm: list, lo: int, n: int) -> None:
    """numpy ``aheapsort_`` on ``perm[lo:lo+n]`` (1-based heap indices as in the C code)."""
    base = lo - 1
    l = n >> 1
    while l > 0:
        tmp = perm[base + l]
        i, j = l, l << 1
        while j <= n:
            if j < n and keys[perm[base + j]] < keys[perm[base + j + 1]]:
                j += 1
            if keys[tmp] < keys[perm[base + j]]:
                perm[base + i] = perm[base + j]
                i, j = j, j + j
            else:
                break
        perm[base + i] = tmp
        l -= 1
    while n > 1:
        tmp = perm[base + n]
        perm[base + n] = perm[base + 1]
        n -= 1
        i, j = 1, 2
        while j <= n:
            if j < n and keys[perm[base + j]] < keys[perm[base + j + 1]]:
                j += 1
            if keys[tmp] < keys[perm[base + j]]:
                perm[base + i] = perm[base + j]
                i, j = j, j + j
            else:
                break
        perm[base + i] = tmp


def _introsort(keys: list) -> list:
    """numpy ``aquicksort_``: the permutation sorting ``keys`` ascending (keys are comparable ints)."""
    num = len(keys)
    perm = list(range(num))
    if num < 2:
        return perm
    pl, pr = 0, num - 1
    stack = []
    cdepth = (num.bit_length() - 1) * 2  # npy_get_msb(num) * 2
    while True:
        if cdepth < 0:
            _heapsort(keys, perm, pl, pr - pl + 1)
        else:
            while pr - pl > SMALL_QUICKSORT:
                pm = pl + ((pr - pl) >> 1)
                if keys[perm[pm]] < keys[perm[pl]]:
                    perm[pm], perm[pl] = perm[pl], perm[pm]
                if keys[perm[pr]] < keys[perm[pm]]:
                    perm[pr], perm[pm] = perm[pm], perm[pr]
                if keys[perm[pm]] < keys[perm[pl]]:
                    perm[pm], perm[pl] = perm[pl], perm[pm]
                vp = keys[perm[pm]]
                pi, pj = pl, pr - 1
                perm[pm], perm[pj] = perm[pj], perm[pm]
                while True:
                    pi += 1
                    while keys[perm[pi]] < vp:
                        pi += 1
                    pj -= 1
                    while vp < keys[perm[pj]]:
                        pj -= 1
                    if pi >= pj:
                        break
                    perm[pi], perm[pj] = perm[pj], perm[pi]
                pk = pr - 1
                perm[pi], perm[pk] = perm[pk], perm[pi]
                cdepth -= 1
                # the larger partition goes on the stack, with the depth budget it had
                if pi - pl < pr - pi:
                    stack.append((pi + 1, pr, cdepth))
                    pr = pi - 1
                else:
                    stack.append((pl, pi - 1, cdepth))
                    pl = pi + 1
            for pi in range(pl + 1, pr + 1):
                vi = perm[pi]
                vp = keys[vi]
                pj = pi
                while pj > pl and vp < keys[perm[pj - 1]]:
                    perm[pj] = perm[pj - 1]
                    pj -= 1
                perm[pj] = vi
        if not stack:
            return perm
        pl, pr, cdepth = stack.pop()


def devkit_argsort(keys) -> np.ndarray:
    """``np.argsort(keys)`` as numpy's classic introsort orders it (ascending; ties in its order).

    Args:
        keys: (N,) finite floats (NaN is rejected: callers validate scores before sorting).

    Returns:
        (N,) int64 permutation.
    """
    keys = np.asarray(keys, dtype=np.float64).reshape(-1)
    if np.isnan(keys).any():
        raise ValueError("devkit_argsort: NaN keys")
    ranks = np.unique(keys, return_inverse=True)[1].reshape(-1)  # -0.0 == 0.0, as numpy compares
    if ranks.size == 0 or ranks.max() == ranks.size - 1:
        return np.argsort(keys, kind="stable")  # no ties: the permutation is unique
    return np.asarray(_introsort(ranks.tolist()), dtype=np.int64)


def eval_order(scores) -> np.ndarray:
    """Descending score order of ``voc_eval``: ``np.argsort(-confidence)``."""
    return devkit_argsort(-np.asarray(scores, dtype=np.float64))


def nms_order(scores) -> np.ndarray:
    """Descending score order of the devkit NMS: ``scores.argsort()[::-1]`` (ties reversed)."""
    return devkit_argsort(scores)[::-1]


def grouped_order(group, scores, mode: str = "eval") -> np.ndarray:
    """Devkit score order inside each group, groups in ascending index order.

    Args:
        group: (N,) int group index of each item (an image, or a tile); scores: (N,) floats.
        mode: ``'eval'`` -> each group ordered as :func:`eval_order` of its members, ``'nms'`` -> as
            :func:`nms_order`; members are taken in their input order, as the devkit builds its arrays.

    Returns:
        (N,) permutation with the groups contiguous.
    """
    group = np.asarray(group, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if mode not in ("eval", "nms"):
        raise ValueError(f"mode must be 'eval' or 'nms', got {mode!r}")
    # Without ties the order is just "descending score"; the position key only matters for ties, which
    # the loop below re-sorts the devkit way anyway.
    order = np.lexsort((-scores, group))
    g, s = group[order], scores[order]
    tied = (g[1:] == g[:-1]) & (s[1:] == s[:-1])
    sub_order = eval_order if mode == "eval" else nms_order
    for gi in np.unique(g[1:][tied]):
        lo, hi = np.searchsorted(g, [gi, gi + 1])
        members = np.sort(order[lo:hi])  # the group's items in input order
        order[lo:hi] = members[sub_order(scores[members])]
    return order
