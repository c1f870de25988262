"""``mutdet evaluate`` and ``mutdet merge``: argument definitions and handlers for ``mutdet_core.cli``.

    mutdet evaluate --dets DIR --labels DIR [--image-ids FILE] --classes dota_v1 [--convention dota]
                    --out results.json [--markdown table.md] [--csv table.csv]
    mutdet merge --tile-dets DIR --out DIR [--classes dota_v1] [--zip] [--labels DIR [--image-ids FILE]]

Wiring (in ``build_parser``)::

    p = sub.add_parser("evaluate", help=...); add_evaluate_arguments(p); p.set_defaults(func=evaluate_cli)
    p = sub.add_parser("merge", help=...); add_merge_arguments(p); p.set_defaults(func=merge_cli)

Handlers return 0 and raise ``ValueError`` / ``FileNotFoundError`` (``LabelFormatError`` is a ValueError)
for bad input, which ``mutdet_core.cli.main`` turns into a one-line message.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("mutdet.evaluation")


def _thresholds(text: str):
    if text.strip().lower() == "coco":
        return "coco"
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give 'coco' or comma-separated numbers like 0.5,0.75") from None


def _optional_float(text: str):
    if text.strip().lower() in ("none", "off", "0"):
        return None
    return float(text)


def _classes(name: str):
    """(class names, abbreviations or None) from a dataset name or a comma-separated list."""
    from ..datasets.splits import resolve_classes

    if "," in name:
        return [c.strip() for c in name.split(",") if c.strip()], None
    names = resolve_classes(name)
    try:
        from ..datasets.classes import get_class_list

        abbreviations = get_class_list(name).abbreviations
    except ValueError:
        abbreviations = None
    return names, abbreviations


def _add_eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-ids", help="file with the image ids to evaluate, one per line (default: every label file)")
    p.add_argument("--convention", choices=("dota", "mmrotate"), default="dota",
                   help="dota = official DOTA devkit (difficult ignored, IoU > thr, mAP over all classes); "
                        "mmrotate = eval_rbbox_map (nothing ignored, IoU >= thr, mAP over classes with GT)")
    p.add_argument("--iou-thresholds", type=_thresholds, default="coco",
                   help="'coco' (0.50:0.05:0.95, default; gives AP50, AP75, AP50:95) or e.g. 0.5,0.75")
    p.add_argument("--area-ap", action="store_true", help="area AP instead of VOC07 11-point AP")
    p.add_argument("--on-unknown-image", choices=("error", "drop"), default="error",
                   help="detections of images outside the evaluated ids: error (default) or drop")


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dets", required=True, help="folder of Task1_<class>.txt detection files (full images)")
    p.add_argument("--labels", required=True, help="DOTA labelTxt folder (<image_id>.txt)")
    p.add_argument("--classes", default="dota_v1",
                   help="class list: dota_v1, dior_r, ohd_sjtu_s, ohd_sjtu_l, ... or a comma-separated list")
    _add_eval_options(p)
    p.add_argument("--out", required=True, help="JSON summary to write")
    p.add_argument("--markdown", help="also write a Markdown table")
    p.add_argument("--csv", help="also write a per-class CSV table")


def _evaluate_and_report(dets, labels, args, names, abbreviations, out, markdown, csv_path) -> dict:
    from .dota_eval import evaluate_detections
    from .report import markdown_table, write_reports

    result = evaluate_detections(dets, labels, args.image_ids, names, convention=args.convention,
                                 iou_thresholds=args.iou_thresholds, use_07_metric=not args.area_ap,
                                 on_unknown_image=args.on_unknown_image)
    write_reports(result, json_path=out, csv_path=csv_path, markdown_path=markdown, abbreviations=abbreviations)
    print(markdown_table(result, abbreviations))
    return result


def evaluate_cli(args: argparse.Namespace) -> int:
    names, abbreviations = _classes(args.classes)
    result = _evaluate_and_report(args.dets, args.labels, args, names, abbreviations, args.out, args.markdown, args.csv)
    log.info("%s convention: AP50 %.4f, AP75 %s, AP50:95 %s -> %s", result["convention"], result["AP50"] or 0.0,
             result["AP75"], result["AP50:95"], args.out)
    return 0


def add_merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile-dets", required=True,
                   help="folder of Task1_<class>.txt files on tiles, named {id}__{size}__{x}___{y} "
                        "(mmrotate) or {id}__{rate}__{x}___{y} (DOTA devkit)")
    p.add_argument("--out", required=True, help="folder for the merged Task1_<class>.txt files (all classes)")
    p.add_argument("--classes", default="dota_v1", help="class list (as for evaluate)")
    p.add_argument("--zip", action="store_true", help="also write <out>.zip for the evaluation server")
    p.add_argument("--score-thr", type=_optional_float, default=0.05,
                   help="drop tile detections scoring below this (default 0.05; 'none' keeps all)")
    p.add_argument("--patch-nms", type=_optional_float, default=0.5,
                   help="per-tile polygon NMS IoU (default 0.5; 'none' skips it)")
    p.add_argument("--merge-nms", type=float, default=0.1, help="per-image polygon NMS IoU (default 0.1)")
    p.add_argument("--naming", choices=("auto", "devkit", "mmrotate"), default="auto",
                   help="how to read the tile name's middle field: devkit rate or mmrotate window size")
    p.add_argument("--devkit-resultmerge", action="store_true",
                   help="the DOTA devkit's ResultMerge.py: no score filter, no per-tile NMS, image NMS 0.3")
    p.add_argument("--labels", help="also evaluate the merged detections against this labelTxt folder")
    p.add_argument("--results", help="evaluation JSON (default: <out>_results.json; with --labels)")
    _add_eval_options(p)


def merge_cli(args: argparse.Namespace) -> int:
    from .merge import DEVKIT_RESULTMERGE, MergeParams, merge_task1_folder

    names, abbreviations = _classes(args.classes)
    if args.devkit_resultmerge:
        params = MergeParams(DEVKIT_RESULTMERGE.score_thr, DEVKIT_RESULTMERGE.patch_nms_iou,
                             DEVKIT_RESULTMERGE.merge_nms_iou, args.naming)
    else:
        params = MergeParams(args.score_thr, args.patch_nms, args.merge_nms, args.naming)
    summary = merge_task1_folder(args.tile_dets, args.out, names, params, make_zip=args.zip)
    if summary["zip"]:
        log.info("submission zip: %s", summary["zip"])
    if args.labels:
        out = Path(args.out)
        results = Path(args.results) if args.results else out.parent / f"{out.name}_results.json"
        _evaluate_and_report(out, args.labels, args, names, abbreviations, results,
                             results.with_suffix(".md"), None)
    return 0
