"""How good are the pseudo-labels? Recall of ground truth and cluster purity, where a tile store has labels.

* **Recall at IoU t**: the fraction of ground-truth objects that some pseudo-box overlaps with rotated IoU
  >= t (any box, no one-to-one matching: a proposal set's recall, as for SAM / selective search). Reported
  at the inspection's ``iou_thr`` (``recall``) and at every IoU of ``RECALL_IOUS`` (``recall_at_<t>``),
  overall, per class, per image and per object-size bucket.
* **Objects are counted per tile**: an object that lies in two overlapping tiles counts twice (once per
  tile, as the pre-training sees it). Per-image figures group the tiles by the image they were cut from, so
  they add up to the overall figure.
* **Size buckets** (``SIZE_BUCKETS``): the area of the ground-truth polygon in tile pixels, with COCO's
  thresholds: small < 32^2, medium 32^2 to 96^2, large >= 96^2 (i.e. sqrt(area) < 32, 32-96, >= 96 px).
* **Cluster purity**: every pseudo-box that overlaps a ground-truth object with IoU >= t (a *matched box*)
  takes that object's class (the best-overlapping one); purity = sum over clusters of the count of the
  cluster's most frequent class / number of matched boxes. 1.0 means every cluster holds one class; with C
  balanced classes a random assignment gives about 1/C. The matched boxes are the whole support of the
  figure (``matched_boxes``, out of ``boxes_compared``): boxes on background do not enter it. Normalised
  mutual information is reported beside it, since purity grows trivially with the number of clusters.

Rotated IoU is exact polygon IoU from ``mutdet_core.geometry.poly_iou`` (ground-truth quadrilaterals that
are not convex are replaced by their convex hull).
"""
from __future__ import annotations

import numpy as np

from ..datasets.dota import polygon_areas
from ..geometry import poly_iou

RECALL_IOUS = (0.3, 0.5, 0.7)
# (name, lower, upper) bounds of sqrt(polygon area) in tile pixels; COCO's small / medium / large
SIZE_BUCKETS = (("small", 0.0, 32.0), ("medium", 32.0, 96.0), ("large", 96.0, float("inf")))


def iou_matrix(gt_polygons: np.ndarray, box_polygons: np.ndarray) -> np.ndarray:
    """``(G, M)`` float64 rotated IoU between ground-truth and pseudo-box polygons (both ``(., 8)``)."""
    g, m = len(gt_polygons), len(box_polygons)
    if g == 0 or m == 0:
        return np.zeros((g, m))
    return np.asarray(poly_iou(np.asarray(gt_polygons, np.float64), np.asarray(box_polygons, np.float64),
                               nonconvex="hull"))


def size_bucket(polygons: np.ndarray) -> np.ndarray:
    """``(N,)`` index into ``SIZE_BUCKETS`` of each ground-truth polygon (by sqrt of its area)."""
    side = np.sqrt(polygon_areas(polygons))
    return np.searchsorted([upper for _, _, upper in SIZE_BUCKETS[:-1]], side, side="right")


def match_tile(gt_polygons, box_polygons) -> dict:
    """Overlaps of one tile: ``gt_best`` (G,) best IoU of each object with any box, ``box_best`` (M,) best
    IoU of each box with any object, ``box_gt`` (M,) index of that object (0 when there is none)."""
    iou = iou_matrix(gt_polygons, box_polygons)
    g, m = iou.shape
    return {"gt_best": iou.max(axis=1) if m else np.zeros(g), "box_best": iou.max(axis=0) if g else np.zeros(m),
            "box_gt": iou.argmax(axis=0) if g else np.zeros(m, np.int64)}


def _fmt(t: float) -> str:
    return f"{t:g}"


class QualityAccumulator:
    """Collects per-tile overlaps; ``summary()`` gives recall (overall, per class, per image, per size
    bucket), the matched boxes and purity."""

    def __init__(self, classes: list[str], iou_thr: float = 0.5):
        self.classes = list(classes)
        self.iou_thr = iou_thr
        self.gt_class, self.gt_best, self.gt_image, self.gt_size = [], [], [], []
        self.box_cluster, self.box_class = [], []
        self.boxes_compared = 0
        self.images: list[str] = []  # in order of first appearance

    def add_tile(self, gt_polygons, gt_class_id, box_polygons, pseudo_class=None, image_id: str = "",
                 match: dict | None = None) -> dict:
        """One tile (``match``: its ``match_tile`` result, when already computed). Returns the row of the
        per-tile table: ``gt``, ``recalled`` (at ``iou_thr``), ``recalled_at_<t>``, ``matched_boxes``."""
        match = match if match is not None else match_tile(gt_polygons, box_polygons)
        best = match["gt_best"]
        self.gt_class.append(np.asarray(gt_class_id, np.int64))
        self.gt_best.append(best)
        self.gt_size.append(size_bucket(gt_polygons))
        if image_id not in self.images:
            self.images.append(image_id)
        self.gt_image.append(np.full(len(best), self.images.index(image_id), np.int64))
        matched = match["box_best"] >= self.iou_thr
        if len(best):  # boxes of unlabelled tiles would dilute the matched fraction with unknowns
            self.boxes_compared += len(matched)
            self.box_class.append(np.asarray(gt_class_id, np.int64)[match["box_gt"][matched]])
            self.box_cluster.append(np.asarray(pseudo_class)[matched] if pseudo_class is not None
                                    else np.full(int(matched.sum()), -1, np.int64))
        row = {"gt": int(len(best)), "recalled": int((best >= self.iou_thr).sum())}
        row.update({f"recalled_at_{_fmt(t)}": int((best >= t).sum()) for t in RECALL_IOUS})
        row["matched_boxes"] = int(matched.sum())
        return row

    def _recall(self, best: np.ndarray) -> dict:
        out = {"objects": int(len(best))}
        if len(best):
            out["recall"] = float((best >= self.iou_thr).mean())
            out.update({f"recall_at_{_fmt(t)}": float((best >= t).mean()) for t in RECALL_IOUS})
            out["mean_best_iou"] = float(best.mean())
        return out

    def summary(self) -> dict:
        """``iou_thr``, ``gt_objects``, ``recall`` (at iou_thr), ``recall_at_<t>`` for t in RECALL_IOUS,
        ``mean_best_iou``, ``recall_per_class`` / ``recall_per_image`` / ``recall_per_size`` ({name:
        {objects, recall, recall_at_<t>, mean_best_iou}}), ``size_buckets`` (their bounds), ``boxes_compared``,
        ``matched_boxes``, ``matched_boxes_fraction``, ``matched_boxes_per_class`` and, with clusters,
        ``cluster_purity``, ``cluster_nmi``, ``majority_class_fraction``, ``clusters_with_matched_boxes``."""
        best = np.concatenate(self.gt_best) if self.gt_best else np.zeros(0)
        gt_class = np.concatenate(self.gt_class) if self.gt_class else np.zeros(0, np.int64)
        out = {"iou_thr": self.iou_thr, "gt_objects": int(len(best))}
        if not len(best):
            return out
        image = np.concatenate(self.gt_image)
        size = np.concatenate(self.gt_size)
        out.update({key: value for key, value in self._recall(best).items() if key != "objects"})
        out["recall_per_class"] = {self._class_name(c): self._recall(best[gt_class == c]) for c in np.unique(gt_class)}
        out["recall_per_image"] = {name: self._recall(best[image == j]) for j, name in enumerate(self.images)
                                   if (image == j).any()}
        out["recall_per_size"] = {name: self._recall(best[size == j]) for j, (name, _, _) in enumerate(SIZE_BUCKETS)}
        out["size_buckets"] = {
            "measure": "sqrt of the ground-truth polygon's area in tile pixels (COCO's thresholds 32, 96)",
            "sqrt_area_px": {name: [lo, None if hi == float("inf") else hi] for name, lo, hi in SIZE_BUCKETS}}
        label = np.concatenate(self.box_class) if self.box_class else np.zeros(0, np.int64)
        cluster = np.concatenate(self.box_cluster) if self.box_cluster else np.zeros(0, np.int64)
        out["boxes_compared"] = int(self.boxes_compared)
        out["matched_boxes"] = int(len(label))
        out["matched_boxes_fraction"] = float(len(label) / self.boxes_compared) if self.boxes_compared else float("nan")
        out["matched_boxes_per_class"] = {self._class_name(c): int((label == c).sum()) for c in np.unique(label)}
        if len(cluster) and (cluster >= 0).all():
            from sklearn.metrics import normalized_mutual_info_score  # sklearn only where clusters are scored

            out["cluster_purity"] = cluster_purity(cluster, label)
            # NMI is 1.0 by convention when only one class is matched: not informative, so NaN.
            out["cluster_nmi"] = (float(normalized_mutual_info_score(label, cluster))
                                  if len(np.unique(label)) > 1 else float("nan"))
            out["majority_class_fraction"] = float(np.bincount(label).max() / len(label))
            out["clusters_with_matched_boxes"] = int(len(np.unique(cluster)))
        return out

    def _class_name(self, c) -> str:
        return self.classes[c] if c < len(self.classes) else str(c)

    def matched_clusters(self) -> tuple[np.ndarray, np.ndarray]:
        """``(cluster, class)`` of every matched box (``cluster`` -1 for a boxes store)."""
        if not self.box_class:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(self.box_cluster), np.concatenate(self.box_class)


def cluster_purity(cluster: np.ndarray, label: np.ndarray) -> float:
    """Sum over clusters of the largest class count, divided by the number of items."""
    cluster, label = np.asarray(cluster, np.int64), np.asarray(label, np.int64)
    if not len(cluster):
        return float("nan")
    table = np.zeros((cluster.max() + 1, label.max() + 1), np.int64)
    np.add.at(table, (cluster, label), 1)
    return float(table.max(axis=1).sum() / len(cluster))


def purity_per_cluster(cluster: np.ndarray, label: np.ndarray) -> dict[int, tuple[int, int, float]]:
    """``{cluster: (matched boxes, most frequent class, its fraction)}``."""
    out = {}
    for c in np.unique(cluster):
        counts = np.bincount(label[cluster == c])
        out[int(c)] = (int(counts.sum()), int(counts.argmax()), float(counts.max() / counts.sum()))
    return out
