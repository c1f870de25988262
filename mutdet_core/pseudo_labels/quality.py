"""How good are the pseudo-labels? Recall of ground truth and cluster purity, where a tile store has labels.

* **Recall at IoU t**: the fraction of ground-truth objects that some pseudo-box overlaps with rotated IoU
  >= t (any box, no one-to-one matching: a proposal set's recall, as for SAM / selective search).
* **Cluster purity**: every pseudo-box that overlaps a ground-truth object with IoU >= t takes that
  object's class (the best-overlapping one); purity = sum over clusters of the count of the cluster's most
  frequent class / number of such boxes. 1.0 means every cluster holds one class; with C balanced classes a
  random assignment gives about 1/C. Normalised mutual information is reported beside it, since purity
  grows trivially with the number of clusters.

Rotated IoU is exact polygon IoU from ``mutdet_core.geometry.poly_iou`` (ground-truth quadrilaterals that
are not convex are replaced by their convex hull).
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from ..geometry import poly_iou


def iou_matrix(gt_polygons: np.ndarray, box_polygons: np.ndarray) -> np.ndarray:
    """``(G, M)`` float64 rotated IoU between ground-truth and pseudo-box polygons (both ``(., 8)``)."""
    g, m = len(gt_polygons), len(box_polygons)
    if g == 0 or m == 0:
        return np.zeros((g, m))
    return np.asarray(poly_iou(np.asarray(gt_polygons, np.float64), np.asarray(box_polygons, np.float64),
                               nonconvex="hull"))


class QualityAccumulator:
    """Collects per-tile overlaps; ``summary()`` gives recall (overall, per class) and purity."""

    def __init__(self, classes: list[str], iou_thr: float = 0.5):
        self.classes = list(classes)
        self.iou_thr = iou_thr
        self.gt_class, self.gt_best = [], []
        self.box_cluster, self.box_class = [], []

    def add_tile(self, gt_polygons, gt_class_id, box_polygons, pseudo_class=None) -> dict:
        """One tile. Returns ``{"gt": G, "recalled": r}`` for the per-tile table."""
        iou = iou_matrix(gt_polygons, box_polygons)
        best = iou.max(axis=1) if iou.shape[1] else np.zeros(len(gt_polygons))
        self.gt_class.append(np.asarray(gt_class_id, np.int64))
        self.gt_best.append(best)
        if pseudo_class is not None and iou.size:
            matched = iou.max(axis=0) >= self.iou_thr
            self.box_cluster.append(np.asarray(pseudo_class)[matched])
            self.box_class.append(np.asarray(gt_class_id, np.int64)[iou.argmax(axis=0)[matched]])
        return {"gt": int(len(best)), "recalled": int((best >= self.iou_thr).sum())}

    def summary(self) -> dict:
        best = np.concatenate(self.gt_best) if self.gt_best else np.zeros(0)
        gt_class = np.concatenate(self.gt_class) if self.gt_class else np.zeros(0, np.int64)
        out = {"iou_thr": self.iou_thr, "gt_objects": int(len(best))}
        if not len(best):
            return out
        out["recall"] = float((best >= self.iou_thr).mean())
        out["recall_at_0.3"] = float((best >= 0.3).mean())
        out["recall_at_0.7"] = float((best >= 0.7).mean())
        out["mean_best_iou"] = float(best.mean())
        out["recall_per_class"] = {
            self.classes[c] if c < len(self.classes) else str(c):
                {"objects": int((gt_class == c).sum()), "recall": float((best[gt_class == c] >= self.iou_thr).mean())}
            for c in np.unique(gt_class)
        }
        if self.box_cluster:
            cluster = np.concatenate(self.box_cluster)
            label = np.concatenate(self.box_class)
            out["matched_boxes"] = int(len(cluster))
            if len(cluster):
                out["cluster_purity"] = cluster_purity(cluster, label)
                # NMI is 1.0 by convention when only one class is matched: not informative, so NaN.
                out["cluster_nmi"] = (float(normalized_mutual_info_score(label, cluster))
                                      if len(np.unique(label)) > 1 else float("nan"))
                out["majority_class_fraction"] = float(np.bincount(label).max() / len(label))
        return out


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
