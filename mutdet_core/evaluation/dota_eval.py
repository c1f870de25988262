"""Rotated-box AP of Task1 detections against DOTA-format ground truth, in two named conventions.

``dota`` reproduces the official DOTA devkit (``dota_evaluation_task1.py``, ``voc_eval``) exactly:
    - ground truths with ``difficult != 0`` are ignored (not counted; a detection matched to one is
      neither TP nor FP), including the split tools' ``2``, since the devkit casts to bool;
    - a detection is TP when its best polygon IoU is ``> thr`` (strict), computed by the devkit's
      ``polyiou`` (reproduced bit for bit, :mod:`.polyiou`) on the 4-point polygons as given;
    - detections ranked by ``np.argsort(-score)`` in file order, ties ordered like numpy's classic
      introsort (:mod:`.ordering`);
    - mAP = sum of the per-class APs / number of classes of the dataset (a class without ground truth
      counts as 0).
``mmrotate`` follows mmrotate's ``eval_rbbox_map`` (used for DIOR-R in the paper):
    - nothing ignored (``difficulty=100``), TP when IoU ``>= thr``, matching per image in score order,
      ranking over the concatenation of images in image-list order; float32-eps precision/recall;
    - mAP = mean over the classes that have ground truth.
    The IoU is the same polygon IoU as ``dota``; mmrotate itself converts ground truths to minimum-area
    rectangles and uses mmcv's float32 ``box_iou_rotated``, which for the rectangular DIOR-R boxes differs
    only in the last bits.

Both: VOC07 11-point AP by default (``use_07_metric=False`` gives the area AP), AP per IoU threshold,
``AP50:95`` = mean over 0.50:0.05:0.95 (per class, and the mean of the per-threshold mAPs).

Where the devkit crashes we decide: a class without detections gets AP 0 (devkit: IndexError); a
detection for an image outside the evaluated ids is an error naming the file and line (devkit: KeyError;
``on_unknown_image='drop'`` drops them with a warning instead, e.g. to evaluate a subset).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets.dota import read_dota_txt, read_task1_folder
from ..datasets.records import ImageRecord, LabelFormatError
from .ap import average_precision
from .matching import assign, best_overlaps
from .ordering import eval_order, grouped_order

log = logging.getLogger(__name__)

COCO_THRESHOLDS = tuple(float(t) for t in np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1))
COCO_LABELS = tuple(f"AP{p}" for p in range(50, 100, 5))


@dataclass(frozen=True)
class Convention:
    """What differs between the devkit and mmrotate (see the module docstring)."""

    name: str
    ignore_difficult: bool  # difficult ground truths neither count nor penalise
    inclusive: bool  # IoU >= thr (mmrotate) instead of > thr (devkit)
    map_over_all_classes: bool  # divide by all classes (devkit) or only those with ground truth
    per_image_matching: bool  # mmrotate matches image by image, then ranks the concatenation


CONVENTIONS = {
    "dota": Convention("dota", ignore_difficult=True, inclusive=False, map_over_all_classes=True,
                       per_image_matching=False),
    "mmrotate": Convention("mmrotate", ignore_difficult=False, inclusive=True, map_over_all_classes=False,
                           per_image_matching=True),
}


def build_convention(name: str) -> Convention:
    if name not in CONVENTIONS:
        raise ValueError(f"unknown evaluation convention {name!r}; choose one of {sorted(CONVENTIONS)}")
    return CONVENTIONS[name]


def threshold_label(thr: float) -> str:
    """``0.5 -> "AP50"``, ``0.75 -> "AP75"``, ``0.525 -> "AP52.5"``."""
    pct = round(thr * 100, 6)
    return f"AP{int(pct)}" if float(pct).is_integer() else f"AP{pct:g}"


def resolve_thresholds(iou_thresholds) -> tuple[float, ...]:
    """``'coco'`` -> 0.50:0.05:0.95 (mmdet's linspace values); a float or a sequence of floats in (0, 1)."""
    if isinstance(iou_thresholds, str):
        if iou_thresholds != "coco":
            raise ValueError(f"iou_thresholds={iou_thresholds!r}: give 'coco' or numbers in (0, 1)")
        return COCO_THRESHOLDS
    values = [iou_thresholds] if np.isscalar(iou_thresholds) else list(iou_thresholds)
    if not values:
        raise ValueError("iou_thresholds is empty")
    out = []
    for v in values:
        try:
            t = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"IoU threshold {v!r} is not a number") from None
        if not 0.0 < t < 1.0:
            raise ValueError(f"IoU threshold {t} is outside (0, 1)")
        out.append(t)
    if len({threshold_label(t) for t in out}) != len(out):
        raise ValueError(f"IoU thresholds repeat: {out}")
    return tuple(out)


def read_image_ids(image_ids) -> list[str]:
    """Image ids from a list or from a text file with one id per line (blank lines skipped)."""
    if isinstance(image_ids, (str, Path)):
        path = Path(image_ids)
        if not path.is_file():
            raise FileNotFoundError(f"image id file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); re-save it as UTF-8 "
                             "or ASCII") from None
        ids = [line.strip() for line in text.splitlines() if line.strip()]
        source = str(path)
    else:
        ids = [str(i) for i in image_ids]
        source = "image_ids"
    if not ids:
        raise ValueError(f"{source}: no image ids to evaluate")
    seen, dups = set(), []
    for i in ids:
        if i in seen:
            dups.append(i)
        seen.add(i)
    if dups:
        # the devkit would count such an image's ground truth twice
        raise ValueError(f"{source}: image ids repeat: {sorted(set(dups))[:10]}")
    return ids


def _load_ground_truth(gt, image_ids) -> tuple[list[str], dict[str, ImageRecord]]:
    if isinstance(gt, (str, Path)):
        label_dir = Path(gt)
        if not label_dir.is_dir():
            raise FileNotFoundError(f"label folder {label_dir} does not exist")
        ids = read_image_ids(image_ids) if image_ids is not None else sorted(p.stem for p in label_dir.glob("*.txt"))
        if not ids:
            raise ValueError(f"label folder {label_dir} has no .txt label files")
        records = {}
        for i in ids:
            path = label_dir / f"{i}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"no label file {path} for image id {i!r}")
            records[i] = read_dota_txt(path)
        return ids, records
    by_id = dict(gt) if isinstance(gt, dict) else {r.image_id: r for r in gt}
    ids = read_image_ids(image_ids) if image_ids is not None else list(by_id)
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"no ground-truth record for image ids {missing[:10]} ({len(missing)} missing)")
    return ids, {i: by_id[i] for i in ids}


def _columns(dets, source: str):
    """``(image_ids list, scores (N,), polys (N, 8))`` from a list of (id, score, poly) or a column dict."""
    if isinstance(dets, dict):
        ids = [str(i) for i in dets["image_ids"]]
        scores = np.asarray(dets["scores"], dtype=np.float64).reshape(-1)
        polys = np.asarray(dets["polygons"], dtype=np.float64).reshape(-1, 8)
    else:
        ids = [str(d[0]) for d in dets]
        scores = np.fromiter((d[1] for d in dets), dtype=np.float64, count=len(dets))
        try:
            polys = np.array([d[2] for d in dets], dtype=np.float64).reshape(len(dets), 8)
        except ValueError:
            raise ValueError(f"{source}: every polygon must have 8 coordinates") from None
    if not (len(ids) == len(scores) == len(polys)):
        raise ValueError(f"{source}: {len(ids)} image ids, {len(scores)} scores, {len(polys)} polygons")
    if not (np.isfinite(scores).all() and np.isfinite(polys).all()):
        raise ValueError(f"{source}: non-finite score or coordinate")
    return ids, scores, polys


def _load_detections(dets, class_names):
    """``{class: (ids, scores, polys)}``, ``{class: file path or None}`` and the missing classes."""
    if isinstance(dets, (str, Path)):
        folder = Path(dets)
        raw = read_task1_folder(folder, class_names=class_names)
        if not raw:
            raise ValueError(f"detection folder {folder} has no Task1_<class>.txt files: nothing to evaluate")
        files = {c: folder / f"Task1_{c}.txt" for c in raw}
    else:
        unknown = [c for c in dets if c not in class_names]
        if unknown:
            raise ValueError(f"detections for classes {unknown} that are not in the class list {list(class_names)}")
        raw, files = dict(dets), {}
        if not raw:
            raise ValueError("no detections given: nothing to evaluate")
    missing = [c for c in class_names if c not in raw]
    columns = {c: _columns(raw[c], str(files.get(c, f"detections[{c!r}]"))) for c in raw}
    return columns, files, missing


def _first_line_of(path: Path | None, image_id: str) -> str:
    if path is None:
        return ""
    # read_task1_folder has already decoded this file as UTF-8
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        tokens = line.split()
        if tokens and tokens[0] == image_id:
            return f":{lineno}"
    return ""


def _has_coco(thresholds) -> bool:
    return set(COCO_LABELS) <= {threshold_label(t) for t in thresholds}


def _evaluate_class(conv: Convention, thresholds, use_07_metric, exact_iou, det_image, scores, polys,
                    gt_image, gt_polys, gt_difficult) -> dict:
    """AP of one class at every threshold. Detections (D,) in input order; ground truths (G,) grouped by
    image in file order. Returns the ``per_class`` entry."""
    gt_ignore = gt_difficult if conv.ignore_difficult else np.zeros(len(gt_image), bool)
    num_gt = int((~gt_ignore).sum())
    entry = {"num_gt": num_gt, "num_ignored": int(gt_ignore.sum()), "num_dets": int(len(scores)),
             "in_map": bool(conv.map_over_all_classes or num_gt > 0)}
    recalls = {}
    if len(scores):
        best = best_overlaps(det_image, polys, gt_image, gt_polys, thresholds, exact=exact_iou)
        if conv.per_image_matching:
            match_order = grouped_order(det_image, scores, "eval")  # tpfp_default, image by image
            concat = np.argsort(det_image, kind="stable")  # then np.vstack of the images, ranked by score
            rank_order = concat[eval_order(scores[concat])]
        else:
            match_order = rank_order = eval_order(scores)
    for t in thresholds:
        if len(scores):
            tp, fp = assign(best.ovmax, best.jmax, gt_ignore, match_order, t, conv.inclusive)
            ap, recall = average_precision(tp[rank_order], fp[rank_order], num_gt, conv.name, use_07_metric)
        else:
            ap, recall = 0.0, 0.0
        entry[threshold_label(t)], recalls[f"{t:g}"] = ap, recall
    if _has_coco(thresholds):
        entry["AP50:95"] = float(np.mean([entry[label] for label in COCO_LABELS]))
    entry["recall"] = recalls
    return entry


def evaluate_detections(det_dir_or_dict, gt_records_or_label_dir, image_ids=None, class_names=None,
                        convention: str = "dota", iou_thresholds="coco", use_07_metric: bool = True,
                        on_unknown_image: str = "error", exact_iou: bool = False) -> dict:
    """Evaluate oriented detections.

    Args:
        det_dir_or_dict: a folder of ``Task1_<class>.txt`` files (lines ``image_id score x1 y1 .. x4 y4``)
            or ``{class: [(image_id, score, poly(8,)), ...]}`` or ``{class: {"image_ids": [...], "scores":
            (N,), "polygons": (N, 8)}}``. File/list order matters for tied scores, as in the devkit.
        gt_records_or_label_dir: a DOTA ``labelTxt`` folder (``<id>.txt``), or ImageRecords (list or
            ``{image_id: record}``).
        image_ids: ids to evaluate (list, or a file with one id per line); default: every label file /
            record.
        class_names: the dataset's classes (all count in the ``dota`` mAP). Required.
        convention: ``'dota'`` or ``'mmrotate'`` (module docstring).
        iou_thresholds: ``'coco'`` (0.50:0.05:0.95, default) or floats in (0, 1).
        use_07_metric: VOC07 11-point AP (default, both conventions) or area AP.
        on_unknown_image: ``'error'`` (default) or ``'drop'`` for detections of images not evaluated.
        exact_iou: compute every IoU with the devkit port (verification; same results, slower).

    Returns:
        JSON-ready dict: ``convention``, ``use_07_metric``, ``iou_thresholds``, ``class_names``,
        ``num_images``, ``mAP`` ({"AP50": .., .., "AP50:95": ..}), shortcuts ``AP50``, ``AP75``,
        ``AP50:95`` (None when their thresholds were not evaluated), ``per_class`` ({class: {"num_gt",
        "num_ignored", "num_dets", "in_map", "AP50", .., "AP50:95", "recall": {"0.5": final recall, ..}}}),
        ``gt_classes_not_evaluated`` ({name: count}), ``warnings`` (list of str).
    """
    conv = build_convention(convention)
    thresholds = resolve_thresholds(iou_thresholds)
    if class_names is None or len(class_names) == 0:
        raise ValueError("class_names is required: the dataset's class list (all classes count in the dota mAP)")
    class_names = list(class_names)
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class names repeat: {class_names}")
    if on_unknown_image not in ("error", "drop"):
        raise ValueError(f"on_unknown_image must be 'error' or 'drop', got {on_unknown_image!r}")
    columns, files, missing = _load_detections(det_dir_or_dict, class_names)
    ids, records = _load_ground_truth(gt_records_or_label_dir, image_ids)
    index = {image_id: k for k, image_id in enumerate(ids)}
    warnings = []
    if missing:
        warnings.append(f"no detections given for classes {missing}: their AP is 0")

    # Check every detection's image before any IoU work.
    for c, (det_ids, _, _) in columns.items():
        unknown = sorted({i for i in det_ids if i not in index})
        if unknown and on_unknown_image == "error":
            where = f"{files[c]}{_first_line_of(files.get(c), unknown[0])}" if c in files else f"detections[{c!r}]"
            raise LabelFormatError(where, f"image id {unknown[0]!r} is not among the {len(ids)} evaluated image ids "
                                   f"({len(unknown)} unknown ids, e.g. {unknown[:5]}); pass "
                                   f"on_unknown_image='drop' (command line: --on-unknown-image drop) to ignore them")
        if unknown:
            warnings.append(f"class {c}: dropped detections of {len(unknown)} images that are not evaluated")

    gt_by_class = {c: ([], [], []) for c in class_names}
    not_evaluated: dict[str, int] = {}
    for k, image_id in enumerate(ids):
        rec = records[image_id]
        for poly, name, diff in zip(rec.polygons, rec.classes, rec.difficulty):
            if name in gt_by_class:
                gt_by_class[name][0].append(k)
                gt_by_class[name][1].append(poly)
                gt_by_class[name][2].append(diff != 0)
            else:
                not_evaluated[name] = not_evaluated.get(name, 0) + 1
    if not_evaluated:
        warnings.append(f"ground-truth classes outside the class list were not evaluated: {not_evaluated}")

    per_class = {}
    for c in class_names:
        g_img, g_poly, g_diff = gt_by_class[c]
        det_ids, scores, polys = columns.get(c, ([], np.zeros(0), np.zeros((0, 8))))
        det_image = np.fromiter((index.get(i, -1) for i in det_ids), dtype=np.int64, count=len(det_ids))
        known = det_image >= 0
        per_class[c] = _evaluate_class(conv, thresholds, use_07_metric, exact_iou, det_image[known], scores[known],
                                       polys[known], np.asarray(g_img, dtype=np.int64),
                                       np.asarray(g_poly, dtype=np.float64).reshape(-1, 8), np.asarray(g_diff, bool))

    labels = [threshold_label(t) for t in thresholds]
    in_map = [c for c in class_names if per_class[c]["in_map"]]
    mean_ap = {}
    for label in labels:
        if conv.map_over_all_classes:
            total = 0.0
            for c in class_names:  # devkit: map = map + ap, then / len(classnames)
                total = total + per_class[c][label]
            mean_ap[label] = total / len(class_names)
        else:
            mean_ap[label] = float(np.mean([per_class[c][label] for c in in_map])) if in_map else 0.0
    if _has_coco(thresholds):
        mean_ap["AP50:95"] = float(np.mean([mean_ap[label] for label in COCO_LABELS]))
    for w in warnings:
        log.warning(w)
    return {
        "convention": conv.name,
        "use_07_metric": bool(use_07_metric),
        "iou_thresholds": list(thresholds),
        "class_names": class_names,
        "num_images": len(ids),
        "mAP": mean_ap,
        "AP50": mean_ap.get("AP50"),
        "AP75": mean_ap.get("AP75"),
        "AP50:95": mean_ap.get("AP50:95"),
        "per_class": per_class,
        "gt_classes_not_evaluated": not_evaluated,
        "warnings": warnings,
    }
