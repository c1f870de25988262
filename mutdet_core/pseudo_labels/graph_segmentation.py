"""Classical object proposals without a checkpoint: hierarchical Felzenszwalb graph segmentation.

SAM needs a 2.4 GB checkpoint and a GPU to be practical; the default (laptop) profile uses this instead.
It follows the paper's idea (class-agnostic masks of "things" in the tile) with a method that needs
numpy and OpenCV only:

1. **Felzenszwalb-Huttenlocher segmentation** (IJCV 2004) on the Gaussian-smoothed RGB tile, 8-connected
   grid graph, edge weight = Euclidean RGB distance. Edges are visited in increasing weight and two
   components merge when ``w <= min(Int(C1) + k/|C1|, Int(C2) + k/|C2|)``. The merge loop is exact (not an
   approximation) and runs in plain Python: ~2.5 M edges per 800 px tile, about 1.5 s on one core.
2. **A ladder of scales** ``k, 2k, 4k, ...``: each scale continues from the previous partition, visiting
   the cheapest edge between each pair of adjacent segments (hierarchical Felzenszwalb), so segments of
   consecutive scales nest and later scales cost little.
3. **Stability** (the analogue of SAM's stability score): a segment at scale ``k`` whose area is still
   ``>= min_stability`` of its parent at scale ``2k`` survives doubling the merge threshold. Objects that
   differ from their surroundings (vehicles, tanks, courts, planes) are stable; texture fragments of
   vegetation or roofs are absorbed quickly and are not.
4. **Objectness** = stability x local contrast (Lab distance between the segment's mean colour and the
   boundary-weighted mean colour of its neighbours, saturating at ``contrast_scale``) x log(area).
   Segments that are too small, too large, unstable or badly filled (area / area of the minimum-area
   rectangle < ``min_fill``) are dropped first; box NMS (as SAM's ``box_nms_thresh``) on the ranked
   segments then keeps at most ``max_masks`` per tile. The score was chosen on 6 real DOTA tiles
   (vehicles, ships, planes, courts) by recall of ground truth at IoU 0.5: stability and contrast separate
   object segments from texture fragments, fill hardly does, and log(area) stops small high-contrast
   fragments (road markings) from crowding out objects.

In the mask store, ``stability_score`` is the scale stability above and ``score`` the objectness; the
fields only SAM has (predicted IoU, prompt point) are NaN.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torchvision

from .params import GraphSegmentationParams  # noqa: F401  (torch-free home, re-exported)


def grid_edges(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """8-connected pixel graph: ``(a, b)`` int64 flat pixel indices of every undirected edge once."""
    idx = np.arange(height * width, dtype=np.int64).reshape(height, width)
    pairs = [(idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :]),
             (idx[:-1, :-1], idx[1:, 1:]), (idx[:-1, 1:], idx[1:, :-1])]
    return (np.concatenate([p.ravel() for p, _ in pairs]), np.concatenate([q.ravel() for _, q in pairs]))


def _roots(parent: list[int]) -> np.ndarray:
    """Union-find root of every pixel by pointer jumping (vectorised; depth is logarithmic)."""
    p = np.asarray(parent, dtype=np.int64)
    while True:
        q = p[p]
        if np.array_equal(q, p):
            return p
        p = q


def felzenszwalb_ladder(image: np.ndarray, scale: float, num_scales: int, sigma: float = 0.8,
                        min_size: int = 16) -> list[dict]:
    """Nested Felzenszwalb segmentations at ``k = scale * 2**i``, ``i < num_scales``.

    The first scale is Felzenszwalb's algorithm exactly (all 8-connected edges in increasing order,
    then the ``min_size`` post-processing). Each later scale continues from the previous partition and
    visits, in increasing order, the cheapest edge between each pair of adjacent segments.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
    Returns:
        one dict per scale: ``labels`` (H, W) int64, a segment's label being the flat index of one of its
        pixels (its union-find root, stable across scales while the segment is unchanged); ``pairs``
        (E, 2) int64 labels of adjacent segments and ``boundary`` (E,) int64 the number of pixel edges
        between them (for the local contrast).
    """
    height, width = image.shape[:2]
    smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma) if sigma > 0 else image.astype(np.float32)
    features = smooth.reshape(-1, image.shape[2])
    a, b = grid_edges(height, width)
    weight = np.sqrt(((features[a] - features[b]) ** 2).sum(axis=1))
    order = np.argsort(weight, kind="stable")  # stable: ties resolved by position, so the result is reproducible
    a, b, weight = a[order], b[order], weight[order]

    n = height * width
    parent, size, internal = list(range(n)), [1] * n, [0.0] * n
    levels = []
    for level in range(num_scales):
        k = scale * 2 ** level
        for x, y, w in zip(a.tolist(), b.tolist(), weight.tolist()):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            while parent[y] != y:
                parent[y] = parent[parent[y]]
                y = parent[y]
            if x != y and w <= internal[x] + k / size[x] and w <= internal[y] + k / size[y]:
                if size[x] < size[y]:
                    x, y = y, x
                parent[y] = x
                size[x] += size[y]
                internal[x] = w  # edges come in increasing order: the merge edge is the largest MST edge
        if level == 0 and min_size > 1:
            # Felzenszwalb's post-processing: components smaller than min_size join their cheapest neighbour.
            # Only edges between components matter; finding them vectorised first halves the loop's cost.
            roots = _roots(parent)
            between = roots[a] != roots[b]
            for x, y, w in zip(roots[a[between]].tolist(), roots[b[between]].tolist(), weight[between].tolist()):
                while parent[x] != x:
                    x = parent[x]
                while parent[y] != y:
                    y = parent[y]
                if x != y and (size[x] < min_size or size[y] < min_size):
                    if size[x] < size[y]:
                        x, y = y, x
                    parent[y] = x
                    size[x] += size[y]
                    internal[x] = max(internal[x], internal[y], w)
        roots = _roots(parent)
        ra, rb = roots[a], roots[b]
        between = ra != rb
        a, b, weight, ra, rb = a[between], b[between], weight[between], ra[between], rb[between]
        key = np.minimum(ra, rb) * n + np.maximum(ra, rb)
        _, first, boundary = np.unique(key, return_index=True, return_counts=True)
        levels.append({"labels": roots.reshape(height, width),
                       "pairs": np.stack([ra[first], rb[first]], axis=1), "boundary": boundary})
        # Next scale: one edge per adjacent pair, the cheapest (the first in sorted order), kept sorted.
        first.sort()
        a, b, weight = roots[a[first]], roots[b[first]], weight[first]
    return levels


def _neighbour_contrast(level: dict, lab_image: np.ndarray) -> np.ndarray:
    """Per label (indexed by label value): Lab distance between a segment's mean colour and the mean colour
    of its neighbours, weighted by shared boundary length. Vectorised over all segments of one scale."""
    labels = level["labels"].ravel()
    n = labels.size
    count = np.bincount(labels, minlength=n).astype(np.float64)
    colour = np.stack([np.bincount(labels, weights=lab_image[..., c].ravel(), minlength=n) for c in range(3)], 1)
    colour /= np.maximum(count, 1)[:, None]
    pairs, boundary = level["pairs"], level["boundary"].astype(np.float64)
    both = np.concatenate([pairs, pairs[:, ::-1]])
    weights = np.concatenate([boundary, boundary])
    around = np.zeros((n, 3))
    for c in range(3):
        around[:, c] = np.bincount(both[:, 0], weights=weights * colour[both[:, 1], c], minlength=n)
    total = np.bincount(both[:, 0], weights=weights, minlength=n)
    has = total > 0
    around[has] /= total[has, None]
    contrast = np.linalg.norm(colour - around, axis=1)
    contrast[~has] = 0.0  # a segment without neighbours is the whole tile
    return contrast


def candidate_segments(image: np.ndarray, params: GraphSegmentationParams) -> dict:
    """Every segment of the ladder that passes the area, stability and fill filters, with its features.

    Returns:
        dict with ``bbox`` (M, 4) int32 ``x, y, w, h`` pixel extent, ``masks`` list of M bool arrays
        ``(h, w)`` cropped to that box, ``area`` (M,) int64, ``stability_score``, ``fill``, ``contrast``
        and ``score`` (M,) float32 (objectness, see the module docstring).
    """
    height, width = image.shape[:2]
    ladder = felzenszwalb_ladder(image, params.scale, params.num_scales, params.sigma, params.min_size)
    lab_image = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float32)
    max_area = params.max_area_fraction * height * width
    seen: set[tuple[int, int]] = set()
    rows = {key: [] for key in ("bbox", "masks", "area", "stability_score", "fill", "contrast")}
    for level in range(len(ladder) - 1):
        labels, parents = ladder[level]["labels"].ravel(), ladder[level + 1]["labels"].ravel()
        count = np.bincount(labels, minlength=labels.size)
        parent_count = np.bincount(parents, minlength=parents.size)
        roots = np.nonzero(count)[0]
        stability = count[roots] / parent_count[parents[roots]]
        ok = (count[roots] >= params.min_area) & (count[roots] <= max_area) & (stability >= params.min_stability)
        if not ok.any():
            continue
        contrast = _neighbour_contrast(ladder[level], lab_image)
        pixels_by_label = np.argsort(labels, kind="stable")
        start = np.concatenate([[0], np.cumsum(count)])
        for root, stab in zip(roots[ok].tolist(), stability[ok].tolist()):
            key = (root, int(count[root]))  # an unchanged segment keeps its root and size at the next scale
            if key in seen:
                continue
            seen.add(key)
            pix = pixels_by_label[start[root]:start[root] + count[root]]
            ys, xs = np.divmod(pix, width)
            x0, y0 = int(xs.min()), int(ys.min())
            crop = np.zeros((int(ys.max()) - y0 + 1, int(xs.max()) - x0 + 1), np.uint8)
            crop[ys - y0, xs - x0] = 1
            contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            (_, (rw, rh), _) = cv2.minAreaRect(max(contours, key=len))
            fill = len(pix) / max(rw * rh, 1.0)
            if rw < 2 or rh < 2 or fill < params.min_fill:
                continue
            rows["bbox"].append((x0, y0, crop.shape[1], crop.shape[0]))
            rows["masks"].append(crop.astype(bool))
            rows["area"].append(len(pix))
            rows["stability_score"].append(stab)
            rows["fill"].append(min(fill, 1.0))
            rows["contrast"].append(contrast[root])
    out = {
        "bbox": np.asarray(rows["bbox"], np.int32).reshape(-1, 4), "masks": rows["masks"],
        "area": np.asarray(rows["area"], np.int64),
        **{key: np.asarray(rows[key], np.float32) for key in ("stability_score", "fill", "contrast")},
    }
    saturated_contrast = np.minimum(1.0, out["contrast"] / params.contrast_scale)
    out["score"] = (out["stability_score"] * saturated_contrast * np.log(np.maximum(out["area"], 2))).astype(np.float32)
    return out


def propose_segments(image: np.ndarray, params: GraphSegmentationParams) -> dict:
    """Object-like segments of one tile, best first: the candidates after box NMS by objectness,
    at most ``max_masks``. Same dict as ``candidate_segments`` (zero segments -> empty arrays)."""
    out = candidate_segments(image, params)
    if not len(out["area"]):
        return out
    bbox = out["bbox"]
    xyxy = torch.as_tensor(np.concatenate([bbox[:, :2], bbox[:, :2] + bbox[:, 2:]], axis=1), dtype=torch.float32)
    keep = torchvision.ops.nms(xyxy, torch.as_tensor(out["score"]), params.box_nms_thresh).numpy()[:params.max_masks]
    return {key: ([value[i] for i in keep] if key == "masks" else value[keep]) for key, value in out.items()}
