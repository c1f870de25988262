"""evaluate_detections: exactness against the DOTA devkit (reference transcription + hard-coded values),
the mmrotate convention, AP corner cases, bad input, reports and the CLI handler."""
from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
from test_evaluation_reference import ref_iou_polyiou, ref_iou_shapely, ref_mmrotate_eval, ref_voc_eval

from mutdet_core.datasets import DOTA_V1, ImageRecord, LabelFormatError
from mutdet_core.evaluation import evaluate_detections, write_reports
from mutdet_core.evaluation.cli import add_evaluate_arguments, evaluate_cli
from mutdet_core.evaluation.report import markdown_table

EVAL_CASE_CLASSES = ["harbor", "large-vehicle", "ship", "small-vehicle"]

# Computed once by tests/test_evaluation_reference.py::ref_voc_eval (shapely IoU; identical with the
# polyiou transcription), i.e. what dota_evaluation_task1.py prints with numpy's classic introsort.
# No published numbers exist for these fixtures (the devkit READMEs print none).
SAMPLE_AP50 = {
    "plane": 0.9796324430286696, "baseball-diamond": 0.6666666666666665, "bridge": 0.4,
    "ground-track-field": 0.27272727272727276, "small-vehicle": 0.44451986202292193,
    "large-vehicle": 0.8131313131313131, "ship": 0.6175005007047447, "tennis-court": 0.6848484848484848,
    "basketball-court": 0.0, "storage-tank": 0.7951428475087218, "soccer-ball-field": 0.5000000000000001,
    "roundabout": 1.0000000000000002, "harbor": 0.0, "swimming-pool": 0.8181818181818183, "helicopter": 0.0,
}
SAMPLE_AP75 = {
    "plane": 0.7663660413660413, "baseball-diamond": 0.1818181818181818, "bridge": 0.0, "ground-track-field": 0.0,
    "small-vehicle": 0.31636363636363635, "large-vehicle": 0.5468625277161863, "ship": 0.36169617858422415,
    "tennis-court": 0.6848484848484848, "basketball-court": 0.0, "storage-tank": 0.5638585385566959,
    "soccer-ball-field": 0.0, "roundabout": 1.0000000000000002, "harbor": 0.0, "swimming-pool": 0.48311688311688317,
    "helicopter": 0.0,
}
CASE_AP50 = {"harbor": 0.6764370381391658, "large-vehicle": 0.8764573242083951, "ship": 0.4297520661157025,
             "small-vehicle": 0.8745742634040505}
CASE_AP75 = {"harbor": 0.4689333654850897, "large-vehicle": 0.6384248719985324, "ship": 0.3192532467532468,
             "small-vehicle": 0.4102020202020203}
CASE_MMROTATE_AP50 = {"harbor": 0.6764370381391659, "large-vehicle": 0.8746125644231761,
                      "ship": 0.49620783628136567, "small-vehicle": 0.8794736761756877}


def _sample(shared_data):
    root = shared_data / "dota_sample"
    return root / "example_split" / "merged_dets", root / "labelTxt", root / "images.txt"


def _case(shared_data):
    root = shared_data / "dota_eval_case"
    return root / "result_classname", root / "row_DOTA_labels", root / "imgnamefile.txt"


def _ids(path):
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("exact_iou", [False, True])
def test_dota_sample_reproduces_the_devkit(shared_data, exact_iou):
    dets, labels, ids = _sample(shared_data)
    res = evaluate_detections(dets, labels, ids, DOTA_V1.names, iou_thresholds=(0.5, 0.75), exact_iou=exact_iou)
    for c in DOTA_V1.names:
        assert res["per_class"][c]["AP50"] == pytest.approx(SAMPLE_AP50[c], abs=1e-12), c
        assert res["per_class"][c]["AP75"] == pytest.approx(SAMPLE_AP75[c], abs=1e-12), c
    # devkit mAP: sum over the 15 classes / 15
    assert res["AP50"] == pytest.approx(sum(SAMPLE_AP50.values()) / 15, abs=1e-12)
    assert res["AP50:95"] is None  # not all ten thresholds evaluated


def test_dota_sample_against_live_reference(shared_data):
    dets, labels, ids = _sample(shared_data)
    names = _ids(ids)
    res = evaluate_detections(dets, labels, ids, DOTA_V1.names, iou_thresholds=(0.5,))
    for c in DOTA_V1.names:
        want = ref_voc_eval(str(dets / "Task1_{:s}.txt"), str(labels / "{:s}.txt"), names, c, 0.5)
        assert res["per_class"][c]["AP50"] == pytest.approx(want, abs=1e-6), c


def test_dota_eval_case_reproduces_the_devkit_at_several_thresholds(shared_data):
    dets, labels, ids = _case(shared_data)
    names = _ids(ids)
    thresholds = (0.5, 0.6, 0.75, 0.9)
    res = evaluate_detections(dets, labels, ids, EVAL_CASE_CLASSES, iou_thresholds=thresholds)
    for c in EVAL_CASE_CLASSES:
        assert res["per_class"][c]["AP50"] == pytest.approx(CASE_AP50[c], abs=1e-12)
        assert res["per_class"][c]["AP75"] == pytest.approx(CASE_AP75[c], abs=1e-12)
        for t in thresholds:
            # both reference IoUs: shapely (valid polygons) and the polyiou transcription
            want = ref_voc_eval(str(dets / "Task1_{:s}.txt"), str(labels / "{:s}.txt"), names, c, t,
                                iou=ref_iou_polyiou if t in (0.6, 0.9) else ref_iou_shapely)
            assert res["per_class"][c][f"AP{round(t * 100)}"] == pytest.approx(want, abs=1e-6), (c, t)
    assert res["AP50"] == pytest.approx(sum(CASE_AP50.values()) / 4, abs=1e-12)
    # difficult objects are ignored: fewer counted ground truths than objects
    assert res["per_class"]["small-vehicle"]["num_ignored"] > 0


def test_dota_map_counts_classes_without_ground_truth_as_zero(shared_data):
    dets, labels, ids = _case(shared_data)
    res = evaluate_detections(dets, labels, ids, DOTA_V1.names, iou_thresholds=(0.5,))
    assert res["per_class"]["plane"]["num_gt"] == 0 and res["per_class"]["plane"]["AP50"] == 0.0
    assert res["per_class"]["plane"]["in_map"]
    assert res["AP50"] == pytest.approx(sum(CASE_AP50.values()) / 15, abs=1e-12)
    assert any("no detections given" in w for w in res["warnings"])


def test_mmrotate_convention_on_eval_case(shared_data):
    dets, labels, ids = _case(shared_data)
    names = _ids(ids)
    res = evaluate_detections(dets, labels, ids, DOTA_V1.names, convention="mmrotate", iou_thresholds=(0.5,))
    for c in EVAL_CASE_CLASSES:
        want, num_gts = ref_mmrotate_eval(str(dets / "Task1_{:s}.txt"), str(labels / "{:s}.txt"), names, c, 0.5)
        assert res["per_class"][c]["AP50"] == pytest.approx(want, abs=1e-6)
        assert res["per_class"][c]["AP50"] == pytest.approx(CASE_MMROTATE_AP50[c], abs=1e-12)
        assert res["per_class"][c]["num_gt"] == num_gts and res["per_class"][c]["num_ignored"] == 0
    # mAP over the four classes with ground truth only; the eleven others are excluded
    assert not res["per_class"]["plane"]["in_map"]
    assert res["AP50"] == pytest.approx(np.mean(list(CASE_MMROTATE_AP50.values())), abs=1e-12)


def test_coco_thresholds_give_ap50_95(shared_data):
    dets, labels, ids = _case(shared_data)
    res = evaluate_detections(dets, labels, ids, EVAL_CASE_CLASSES)  # default 'coco'
    assert len(res["iou_thresholds"]) == 10
    assert res["AP50"] == pytest.approx(sum(CASE_AP50.values()) / 4, abs=1e-12)
    per_thr = [res["mAP"][f"AP{p}"] for p in range(50, 100, 5)]
    assert res["AP50:95"] == pytest.approx(np.mean(per_thr), abs=1e-12)
    assert per_thr == sorted(per_thr, reverse=True)  # stricter IoU, lower AP
    c = res["per_class"]["ship"]
    assert c["AP50:95"] == pytest.approx(np.mean([c[f"AP{p}"] for p in range(50, 100, 5)]))
    typed = evaluate_detections(dets, labels, ids, EVAL_CASE_CLASSES, iou_thresholds=[p / 100 for p in range(50, 100, 5)])
    assert typed["AP50:95"] == pytest.approx(res["AP50:95"], abs=1e-12)


# ------------------------------------------------------------------------- semantics on toy data


def _box(x0, y0, x1, y1):
    return np.array([x0, y0, x1, y0, x1, y1, x0, y1], dtype=float)


def _record(image_id, boxes, classes, difficulty=None):
    return ImageRecord(image_id, None, np.array(boxes).reshape(-1, 8), classes,
                       np.zeros(len(classes), np.int64) if difficulty is None else difficulty)


def test_iou_exactly_at_threshold_is_fp_in_dota_and_tp_in_mmrotate():
    gt = [_record("a", [_box(0, 0, 10, 10)], ["car"])]
    dets = {"car": [("a", 0.9, _box(0, 0, 10, 5))]}  # IoU = 50 / 100 = 0.5 exactly
    dota = evaluate_detections(dets, gt, None, ["car"], iou_thresholds=(0.5,))
    mmr = evaluate_detections(dets, gt, None, ["car"], convention="mmrotate", iou_thresholds=(0.5,))
    assert dota["per_class"]["car"]["AP50"] == 0.0
    assert mmr["per_class"]["car"]["AP50"] == pytest.approx(1.0)


def test_difficult_objects_are_ignored_only_in_dota_convention():
    gt = [_record("a", [_box(0, 0, 10, 10), _box(20, 0, 30, 10), _box(40, 0, 50, 10)], ["car"] * 3,
                  np.array([0, 1, 2]))]
    dets = {"car": [("a", 0.9, _box(20, 0, 30, 10)), ("a", 0.8, _box(40, 0, 50, 10)), ("a", 0.7, _box(0, 0, 10, 10)),
                    ("a", 0.6, _box(100, 100, 110, 110))]}
    dota = evaluate_detections(dets, gt, None, ["car"], iou_thresholds=(0.5,))["per_class"]["car"]
    # difficult 1 and 2 ignored: the first two detections are neither TP nor FP, so precision is 1 at recall 1
    assert (dota["num_gt"], dota["num_ignored"], dota["AP50"]) == (1, 2, pytest.approx(1.0))
    mmr = evaluate_detections(dets, gt, None, ["car"], convention="mmrotate", iou_thresholds=(0.5,))["per_class"]["car"]
    assert (mmr["num_gt"], mmr["num_ignored"], mmr["AP50"]) == (3, 0, pytest.approx(1.0))


def test_covered_best_match_gives_fp_without_fallback_to_second_best():
    gt = [_record("a", [_box(0, 0, 10, 10), _box(10, 0, 20, 10)], ["car", "car"])]
    dets = {"car": [("a", 0.9, _box(0, 0, 10, 10)), ("a", 0.8, _box(3, 0, 13, 10))]}  # IoU 0.54 with A, 0.18 with B
    res = evaluate_detections(dets, gt, None, ["car"], iou_thresholds=(0.5,))["per_class"]["car"]
    assert res["recall"]["0.5"] == 0.5
    assert res["AP50"] == pytest.approx(6 / 11)  # precision 1 up to recall 0.5: points 0, 0.1, .., 0.5


def test_eleven_point_recall_of_exactly_0_3_misses_the_0_3_point():
    # np.arange(0, 1.1, 0.1)[3] is 0.30000000000000004: recall 3/10 reaches only t = 0, 0.1, 0.2
    gt = [_record("a", [_box(30 * k, 0, 30 * k + 10, 10) for k in range(10)], ["car"] * 10)]
    dets = {"car": [("a", 0.9 - 0.1 * k, _box(30 * k, 0, 30 * k + 10, 10)) for k in range(3)]}
    res = evaluate_detections(dets, gt, None, ["car"], iou_thresholds=(0.5,))
    assert res["per_class"]["car"]["AP50"] == pytest.approx(3 / 11)
    area = evaluate_detections(dets, gt, None, ["car"], iou_thresholds=(0.5,), use_07_metric=False)
    assert area["per_class"]["car"]["AP50"] == pytest.approx(0.3)


def test_class_without_ground_truth_dota_zero_mmrotate_excluded():
    gt = [_record("a", [_box(0, 0, 10, 10)], ["car"])]
    dets = {"car": [("a", 0.9, _box(0, 0, 10, 10))], "ship": [("a", 0.5, _box(50, 50, 60, 60))]}
    dota = evaluate_detections(dets, gt, None, ["car", "ship"], iou_thresholds=(0.5,))
    assert dota["per_class"]["ship"]["AP50"] == 0.0 and dota["AP50"] == pytest.approx(0.5)
    mmr = evaluate_detections(dets, gt, None, ["car", "ship"], convention="mmrotate", iou_thresholds=(0.5,))
    assert not mmr["per_class"]["ship"]["in_map"] and mmr["AP50"] == pytest.approx(1.0)


def test_column_dict_input_equals_list_input():
    gt = [_record("a", [_box(0, 0, 10, 10), _box(20, 0, 30, 10)], ["car", "car"])]
    rows = [("a", 0.9, _box(1, 0, 11, 10)), ("a", 0.4, _box(20, 1, 30, 11)), ("a", 0.3, _box(60, 0, 70, 10))]
    cols = {"image_ids": [r[0] for r in rows], "scores": [r[1] for r in rows],
            "polygons": np.array([r[2] for r in rows])}
    a = evaluate_detections({"car": rows}, gt, None, ["car"])
    b = evaluate_detections({"car": cols}, gt, None, ["car"])
    assert a["per_class"] == b["per_class"] and a["mAP"]["AP50"] > 0.9


# ---------------------------------------------------------------------------------- bad input


def _write_case(tmp_path, det_lines, label_lines=("0 0 10 0 10 10 0 10 ship 0",), ids=("a",)):
    det_dir, label_dir = tmp_path / "dets", tmp_path / "labels"
    det_dir.mkdir()
    label_dir.mkdir()
    (det_dir / "Task1_ship.txt").write_text("\n".join(det_lines) + "\n")
    for i in ids:
        (label_dir / f"{i}.txt").write_text("imagesource:GoogleEarth\ngsd:null\n" + "\n".join(label_lines) + "\n")
    return det_dir, label_dir


def test_malformed_detection_line_names_file_and_line(tmp_path):
    det_dir, label_dir = _write_case(tmp_path, ["a 0.9 0 0 10 0 10 10 0 10", "a 0.8 0 0 10 0 10 10 0"])
    with pytest.raises(LabelFormatError, match=r"Task1_ship\.txt:2: expected"):
        evaluate_detections(det_dir, label_dir, None, ["ship"])
    (det_dir / "Task1_ship.txt").write_text("a 0.9 0 0 10 0 10 10 0 10\na high 0 0 10 0 10 10 0 10\n")
    with pytest.raises(LabelFormatError, match=r"Task1_ship\.txt:2: non-numeric"):
        evaluate_detections(det_dir, label_dir, None, ["ship"])


def test_unknown_image_id_is_an_error_naming_file_and_line_or_dropped(tmp_path):
    det_dir, label_dir = _write_case(tmp_path, ["a 0.9 0 0 10 0 10 10 0 10", "zz 0.8 0 0 10 0 10 10 0 10"])
    with pytest.raises(LabelFormatError, match=r"Task1_ship\.txt:2: image id 'zz' is not among the 1 evaluated"):
        evaluate_detections(det_dir, label_dir, None, ["ship"])
    res = evaluate_detections(det_dir, label_dir, None, ["ship"], on_unknown_image="drop", iou_thresholds=(0.5,))
    assert res["per_class"]["ship"]["num_dets"] == 1 and res["AP50"] == pytest.approx(1.0)
    assert any("dropped" in w for w in res["warnings"])


def test_empty_detection_folder_is_nothing_to_evaluate(tmp_path):
    det_dir, label_dir = _write_case(tmp_path, ["a 0.9 0 0 10 0 10 10 0 10"])
    (det_dir / "Task1_ship.txt").unlink()
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_detections(det_dir, label_dir, None, ["ship"])
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_detections({}, label_dir, None, ["ship"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_detections(tmp_path / "nowhere", label_dir, None, ["ship"])


def test_empty_detection_file_gives_ap_zero(tmp_path):
    det_dir, label_dir = _write_case(tmp_path, [])
    (det_dir / "Task1_ship.txt").write_text("")
    res = evaluate_detections(det_dir, label_dir, None, ["ship"], iou_thresholds=(0.5,))
    assert res["AP50"] == 0.0 and res["per_class"]["ship"]["num_gt"] == 1 and res["per_class"]["ship"]["num_dets"] == 0


@pytest.mark.parametrize("thresholds", [(0.0,), (1.0,), (0.5, 1.5), (-0.1,), "voc", (), ("x",), (0.5, 0.5)])
def test_iou_thresholds_outside_open_unit_interval_are_rejected(tmp_path, thresholds):
    det_dir, label_dir = _write_case(tmp_path, ["a 0.9 0 0 10 0 10 10 0 10"])
    with pytest.raises(ValueError):
        evaluate_detections(det_dir, label_dir, None, ["ship"], iou_thresholds=thresholds)


def test_other_bad_inputs(tmp_path):
    det_dir, label_dir = _write_case(tmp_path, ["a 0.9 0 0 10 0 10 10 0 10"])
    with pytest.raises(FileNotFoundError, match=r"no label file .*b\.txt"):
        evaluate_detections(det_dir, label_dir, ["a", "b"], ["ship"])
    with pytest.raises(ValueError, match="repeat"):
        evaluate_detections(det_dir, label_dir, ["a", "a"], ["ship"])
    with pytest.raises(ValueError, match="class_names is required"):
        evaluate_detections(det_dir, label_dir, None, None)
    with pytest.raises(LabelFormatError, match="unknown class 'ship'"):
        evaluate_detections(det_dir, label_dir, None, ["car"])
    with pytest.raises(ValueError, match="unknown evaluation convention"):
        evaluate_detections(det_dir, label_dir, None, ["ship"], convention="voc")
    (label_dir / "a.txt").write_text("0 0 10 0 10 10 ship 0\n")
    with pytest.raises(LabelFormatError, match=r"a\.txt:1"):
        evaluate_detections(det_dir, label_dir, None, ["ship"])


# ------------------------------------------------------------------------------- reports, CLI


def test_reports_json_csv_markdown(shared_data, tmp_path):
    dets, labels, ids = _case(shared_data)
    res = evaluate_detections(dets, labels, ids, DOTA_V1.names)
    paths = write_reports(res, tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.md", DOTA_V1.abbreviations)
    assert [p.name for p in paths] == ["r.json", "r.csv", "r.md"]
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["AP50"] == pytest.approx(res["AP50"]) and summary["AP50:95"] == pytest.approx(res["AP50:95"])
    assert summary["per_class"]["ship"]["num_dets"] == 36
    assert summary["per_class"]["ship"]["AP50"] == pytest.approx(CASE_AP50["ship"], abs=1e-12)
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == 16 and rows[-1]["class"] == "mAP" and rows[6]["abbreviation"] == "SH"
    assert float(rows[6]["AP50"]) == CASE_AP50["ship"]  # full precision in the CSV
    md = (tmp_path / "r.md").read_text()
    assert f"| SH | {res['per_class']['ship']['num_gt']} |" in md
    assert f"{100 * CASE_AP50['ship']:.2f}" in md and "| mAP |" in md
    mmr = evaluate_detections(dets, labels, ids, DOTA_V1.names, convention="mmrotate", iou_thresholds=(0.5,))
    assert "| PL | 0 | 0 | 0 | - |" in markdown_table(mmr, DOTA_V1.abbreviations)


def test_evaluate_cli(shared_data, tmp_path, capsys):
    dets, labels, ids = _case(shared_data)
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    args = parser.parse_args(["--dets", str(dets), "--labels", str(labels), "--image-ids", str(ids),
                              "--classes", ",".join(EVAL_CASE_CLASSES), "--iou-thresholds", "0.5,0.75",
                              "--out", str(tmp_path / "out" / "results.json"), "--markdown", str(tmp_path / "t.md"),
                              "--csv", str(tmp_path / "t.csv")])
    assert evaluate_cli(args) == 0
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert summary["convention"] == "dota"
    for c in EVAL_CASE_CLASSES:
        assert summary["per_class"][c]["AP50"] == pytest.approx(CASE_AP50[c], abs=1e-12)
        assert summary["per_class"][c]["AP75"] == pytest.approx(CASE_AP75[c], abs=1e-12)
    assert "| mAP |" in capsys.readouterr().out and (tmp_path / "t.csv").is_file() and (tmp_path / "t.md").is_file()
    with pytest.raises(SystemExit):
        parser.parse_args(["--dets", "d", "--labels", "l", "--out", "o", "--iou-thresholds", "a,b"])
