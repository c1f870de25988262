"""Evaluation reports: the JSON summary, a per-class CSV table and a Markdown table like the paper's.

Input is the dict returned by :func:`.dota_eval.evaluate_detections`:
    ``mAP`` {"AP50": .., "AP75": .., "AP50:95": ..}, ``per_class`` {class: {"num_gt", "num_ignored",
    "num_dets", "in_map", "AP50", .., "AP50:95", "recall": {...}}}, ``convention``, ``class_names``, ...
AP values are fractions in the JSON and CSV (full precision) and percentages with 2 decimals in Markdown.
Files are written to a temporary name and renamed, so an interrupted run never leaves a half table.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path


def ap_labels(result: dict) -> list[str]:
    """AP columns present in ``result``, in threshold order, with ``AP50:95`` last when computed."""
    from .dota_eval import threshold_label

    labels = [threshold_label(t) for t in result["iou_thresholds"]]
    return labels + (["AP50:95"] if result["mAP"].get("AP50:95") is not None else [])


def per_class_rows(result: dict, abbreviations=None) -> list[dict]:
    """One row per class plus a final ``mAP`` row: class, [abbreviation], num_gt, num_ignored, num_dets,
    in_map, then the AP columns."""
    labels = ap_labels(result)
    abbr = dict(zip(result["class_names"], abbreviations)) if abbreviations else None
    rows = []
    for c in result["class_names"]:
        e = result["per_class"][c]
        row = {"class": c}
        if abbr:
            row["abbreviation"] = abbr[c]
        row.update(num_gt=e["num_gt"], num_ignored=e["num_ignored"], num_dets=e["num_dets"], in_map=e["in_map"])
        row.update({k: e.get(k) for k in labels})
        rows.append(row)
    total = {"class": "mAP"}
    if abbr:
        total["abbreviation"] = "mAP"
    total.update(num_gt=sum(r["num_gt"] for r in rows), num_ignored=sum(r["num_ignored"] for r in rows),
                 num_dets=sum(r["num_dets"] for r in rows), in_map=None)
    total.update({k: result["mAP"].get(k) for k in labels})
    rows.append(total)
    return rows


def csv_text(result: dict, abbreviations=None) -> str:
    rows = per_class_rows(result, abbreviations)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def markdown_table(result: dict, abbreviations=None, columns=("AP50", "AP75", "AP50:95")) -> str:
    """Markdown table: one row per class (AP in %, 2 decimals), ``mAP`` last. Classes outside the mAP
    (mmrotate convention, no ground truth) show ``-``."""
    present = [c for c in columns if c in ap_labels(result)]
    rows = per_class_rows(result, abbreviations)
    name_key = "abbreviation" if abbreviations else "class"
    head = ["class", "GT", "ignored", "dets"] + present
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        def cell(k):
            v = r.get(k)
            if r["in_map"] is False or v is None:
                return "-"
            return f"{100 * v:.2f}"
        lines.append("| " + " | ".join([str(r[name_key]), str(r["num_gt"]), str(r["num_ignored"]),
                                        str(r["num_dets"])] + [cell(k) for k in present]) + " |")
    note = (f"\n{result['convention']} convention, {'VOC07 11-point' if result['use_07_metric'] else 'area'} AP, "
            f"{result['num_images']} images.\n")
    return "\n".join(lines) + "\n" + note


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def summary(result: dict) -> dict:
    """The JSON summary (the result itself, with non-finite numbers as null)."""
    return _json_safe(result)


def _write_atomic(path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_reports(result: dict, json_path=None, csv_path=None, markdown_path=None, abbreviations=None) -> list[Path]:
    """Write whichever of the JSON summary, CSV and Markdown tables are asked for; returns their paths."""
    written = []
    if json_path is not None:
        written.append(_write_atomic(json_path, json.dumps(summary(result), indent=2) + "\n"))
    if csv_path is not None:
        written.append(_write_atomic(csv_path, csv_text(result, abbreviations)))
    if markdown_path is not None:
        written.append(_write_atomic(markdown_path, markdown_table(result, abbreviations)))
    return written
