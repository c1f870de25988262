"""Rule ``evaluate``: merged ``Task1_<class>.txt`` detections against a split's labels (SPEC 5).

A thin wrapper of ``evaluation.evaluate_detections`` and ``evaluation.write_reports``: rotated-polygon VOC07
AP at IoU 0.50:0.05:0.95, in the ``dota`` (devkit) or ``mmrotate`` (DIOR-R) convention; writes the JSON
summary, the per-class CSV and the Markdown table; returns the result (``AP50``, ``AP75``, ``AP50:95``,
``mAP``, ``per_class``, ...).

Ground truth: a DOTA ``labelTxt`` folder (``<image id>.txt``; for the synthetic data
``results/data/synthetic/<split>/labelTxt``), or ``ImageRecord``s (list or ``{id: record}``, e.g. from
``datasets.splits.load_split`` for DIOR-R / OHD-SJTU). The evaluated images default to every label file /
record; ``image_ids`` narrows them (a list, or a file with one id per line).
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..evaluation import evaluate_detections, write_reports

log = logging.getLogger("mutdet.runs.evaluate")


def evaluate_run(merged_dir, labels, class_names, convention: str = "dota", out_json=None, out_md=None,
                 out_csv=None, image_ids=None, abbreviations=None, iou_thresholds="coco") -> dict:
    """Evaluate the merged detections of ``merged_dir`` and write the reports asked for.

    Args:
        merged_dir: folder with ``Task1_<class>.txt`` (``predict_run``'s ``merged``).
        labels: DOTA label folder, or ImageRecords (list / dict by image id).
        class_names: the dataset's classes (every one counts in the ``dota`` mAP).
        convention: ``'dota'`` or ``'mmrotate'``.
        out_json, out_md, out_csv: report paths (None: not written).
        image_ids: images to evaluate (default: all of ``labels``).
        abbreviations: short class names for the tables (e.g. DOTA's PL, BD, ...), same order.
        iou_thresholds: ``'coco'`` (0.50:0.05:0.95) or a list of floats.
    Raises:
        FileNotFoundError / LabelFormatError (file and line) / ValueError before any IoU is computed.
    """
    merged_dir = Path(merged_dir)
    if not merged_dir.is_dir():
        raise FileNotFoundError(f"detection folder {merged_dir} does not exist (run the predict stage first)")
    if abbreviations is not None and len(abbreviations) != len(class_names):
        raise ValueError(f"{len(abbreviations)} abbreviations for {len(class_names)} classes")
    result = evaluate_detections(merged_dir, labels, image_ids=image_ids, class_names=list(class_names),
                                 convention=convention, iou_thresholds=iou_thresholds)
    result["detections"] = str(merged_dir)
    result["labels"] = str(labels) if isinstance(labels, (str, Path)) else f"{len(labels)} records"
    write_reports(result, json_path=out_json, csv_path=out_csv, markdown_path=out_md,
                  abbreviations=list(abbreviations) if abbreviations is not None else None)
    log.info("%s (%s convention, %d images): AP50 %s, AP75 %s, AP50:95 %s", merged_dir, convention,
             result["num_images"], _pct(result["AP50"]), _pct(result["AP75"]), _pct(result["AP50:95"]))
    return result


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def evaluate_split_run(merged_dir, dataset_entry: dict, dataset_name: str, split: str, dataset_root=None,
                       convention: str = "dota", out_json=None, out_md=None, out_csv=None,
                       results_dir="results") -> dict:
    """``evaluate_run`` against the labels of a configured dataset split (what rule ``evaluate`` calls).

    Args:
        dataset_entry: the dataset's config entry (``source``, ``classes``, ``root``, ...).
        dataset_name, split: which split's labels (``datasets.splits.load_split``).
        dataset_root: the dataset folder (the rule passes its input; default: from the entry).
        convention, out_json, out_md, out_csv: as ``evaluate_run``.
    Raises:
        ValueError: an unlabelled split (DOTA test has no public labels: evaluate on the server instead).
    """
    from ..datasets.classes import get_class_list
    from ..datasets.splits import load_split, resolve_classes

    if dataset_entry.get("labelled", True) is False:
        raise ValueError(f"dataset {dataset_name!r} split {split!r} has no labels (labelled: false); submit "
                         f"{Path(merged_dir).parent / 'merged.zip'} to the evaluation server instead")
    records = load_split(dataset_entry, dataset_name, split, results_dir, root=dataset_root)
    if not records:
        raise ValueError(f"dataset {dataset_name!r} split {split!r}: no labelled images to evaluate on")
    classes = resolve_classes(dataset_entry.get("classes", "dota_v1"))
    abbreviations = None
    if isinstance(dataset_entry.get("classes"), str):
        try:
            abbreviations = get_class_list(dataset_entry["classes"]).abbreviations
        except (KeyError, ValueError):
            abbreviations = None
    return evaluate_run(merged_dir, records, classes, convention, out_json, out_md, out_csv,
                        abbreviations=abbreviations)
