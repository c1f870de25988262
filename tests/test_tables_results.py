"""Evaluation summaries -> table rows (mutdet_core/tables/results.py), on the real DOTA evaluation case."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mutdet_core.datasets.classes import DOTA_V1
from mutdet_core.evaluation.dota_eval import evaluate_detections
from mutdet_core.tables import RESULT_COLUMNS, render_table
from mutdet_core.tables.results import evaluation_rows, read_results_csv
from mutdet_core.tables.vocabulary import RunKey

MUTDET_DOTA = RunKey("mutdet", "dota_train", "resnet50", "ars_detr", "dota_v1", 1.0, 36)


@pytest.fixture(scope="module")
def dota_result(shared_data):
    case = shared_data / "dota_eval_case"
    return evaluate_detections(case / "result_classname", case / "row_DOTA_labels", case / "imgnamefile.txt",
                               class_names=DOTA_V1.names, convention="dota")


def test_real_evaluation_becomes_table3_rows(dota_result, tmp_path):
    rows = evaluation_rows(MUTDET_DOTA, 36, dota_result, seed=1)
    assert list(rows.columns) == list(RESULT_COLUMNS) + ["seed"]
    by_metric = rows.set_index("metric")["value"]
    assert set(by_metric.index) == set(DOTA_V1.abbreviations) | {"AP50", "AP75", "AP50:95"}
    assert by_metric["AP50"] == pytest.approx(100 * dota_result["mAP"]["AP50"])
    assert by_metric["SV"] == pytest.approx(100 * dota_result["per_class"]["small-vehicle"]["AP50"])
    assert by_metric["PL"] == 0.0  # no plane detections in the case: the devkit's AP is 0
    # The rows fill MutDet's line of Table 3 (15 classes + AP50 + AP75) and nothing else.
    tidy = render_table(3, rows, tmp_path / "t3.md", tmp_path / "t3.csv")
    filled = tidy[tidy["ours"].notna()]
    assert set(filled["row"]) == {"MutDet (Ours)"} and len(filled) == 17
    np.testing.assert_allclose(filled["diff"], filled["ours"] - filled["paper"])


def test_json_summary_and_results_csv(dota_result, tmp_path):
    summary = tmp_path / "eval.json"
    summary.write_text(json.dumps(dota_result), encoding="utf-8")
    rows = evaluation_rows(MUTDET_DOTA, 24, summary)
    assert (rows["eval_epoch"] == 24).all() and "seed" not in rows
    path = tmp_path / "ours.csv"
    rows.to_csv(path, index=False)
    assert len(read_results_csv(path)) == len(rows)
    path.write_text(path.read_text().replace("dota_v1", "dota"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"ours\.csv: finetune_dataset values \['dota'\]"):
        read_results_csv(path)
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json: cannot read"):
        evaluation_rows(MUTDET_DOTA, 36, tmp_path / "bad.json")
    with pytest.raises(ValueError, match="no 'mAP'"):
        evaluation_rows(MUTDET_DOTA, 36, {"AP50": 0.5})
