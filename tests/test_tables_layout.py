"""Table layouts and the run-key vocabulary (mutdet_core/tables/layout.py, vocabulary.py)."""
from __future__ import annotations

import pytest

from mutdet_core.tables import (cells_for_table, evaluations_for_tables, get_layout, pretrain_runs_for_tables,
                                runs_for_tables)
from mutdet_core.tables.vocabulary import Cell, RunKey, canonical_method, is_configurable, method_config

MUTDET_DIOR = RunKey("mutdet", "dota_train", "resnet50", "ars_detr", "dior_r", 1.0, 36)


@pytest.mark.parametrize("n,rows,cols", [(1, 4, 2), (2, 5, 22), (3, 5, 17), (4, 5, 12), (5, 5, 8), (6, 5, 6),
                                         (7, 8, 3), (8, 12, 3), (9, 5, 6)])
def test_every_table_has_the_papers_shape(n, rows, cols):
    layout = get_layout(n)
    cells = cells_for_table(n)
    assert (len(layout.rows), len(layout.columns)) == (rows, cols)
    assert len(cells) == rows * cols
    assert len({(c.row_index, c.column) for c in cells}) == len(cells)
    # Within a table no two cells are the same number.
    assert len({c.key for c in cells}) == len(cells)
    for row in layout.rows:
        assert len(row.descriptors) == len(layout.descriptor_headers)


def test_cells_name_the_experiment():
    t4 = {(c.row, c.column): c for c in cells_for_table(4)}
    cell = t4[("MutDet (Ours)", "OHD-SJTU-L [37] / 1× / AP50:95")]
    assert cell.run == RunKey("mutdet", "dota_train", "resnet50", "ars_detr", "ohd_sjtu_l", 1.0, 12)
    assert (cell.eval_epoch, cell.metric) == (12, "AP50:95")
    t5 = {(c.row, c.column): c for c in cells_for_table(5)}
    assert t5[("-", "AP75 / 25%")].run == RunKey("none", "none", "resnet50", "ars_detr", "dior_r", 0.25, 36)
    t6 = {(c.row, c.column): c for c in cells_for_table(6)}
    assert t6[("MutDet (Ours)", "12 Epoch / AP50")].run == MUTDET_DIOR
    assert t6[("MutDet (Ours)", "12 Epoch / AP50")].eval_epoch == 12
    t8 = cells_for_table(8)
    swin = [c for c in t8 if c.row_index == 12]
    assert {c.run for c in swin} == {RunKey("mutdet", "rsdet4", "swin_t", "ars_detr", "dota_v1", 1.0, 36)}
    t9 = {(c.row, c.column): c for c in cells_for_table(9)}
    assert t9[("DETReg [1]", "CSL D-DETR / AP75")].run.detector == "csl_ddetr"
    t2 = {c.column: c for c in cells_for_table(2) if c.row_index == 5}
    assert t2["ESA"].metric == "ESA" and t2["ESA"].run == MUTDET_DIOR


def test_shared_runs_are_listed_once():
    runs = runs_for_tables([1, 2, 5, 6, 7, 8])
    assert len(runs) == len(set(runs))
    assert runs.count(MUTDET_DIOR) == 1
    every = runs_for_tables(range(1, 10))
    assert len(every) == len(set(every)) == 73
    # Table 6 needs nothing beyond Tables 2 and 5 ... but epochs 12 and 24 of the same runs.
    assert set(runs_for_tables(6)) <= set(runs_for_tables([2, 5]))
    epochs = evaluations_for_tables([2, 6])
    assert epochs[MUTDET_DIOR] == [12, 24, 36]
    assert evaluations_for_tables(2)[MUTDET_DIOR] == [36]
    # Table 4's 1x is its own 12-epoch schedule.
    assert {r.schedule_epochs for r in runs_for_tables(4)} == {12, 36}


def test_pretraining_runs():
    pre = pretrain_runs_for_tables(range(1, 10))
    assert len(pre) == len(set(pre)) == 25
    assert all(p.pretrain_method != "none" for p in pre)
    assert {p.pretrain_dataset for p in pre} == {"dota_train", "rsdet4"}
    assert {p.run_id for p in pretrain_runs_for_tables(8)} == {
        "detreg.dota_train.resnet50.ars_detr", "mutdet.dota_train.resnet50.ars_detr",
        "detreg.rsdet4.swin_t.ars_detr", "mutdet.rsdet4.swin_t.ars_detr"}


def test_unresolved_table7_row_is_shown_but_not_run():
    row6 = {c.run.pretrain_method for c in cells_for_table(7) if c.row_index == 6}
    assert row6 == {"mutdet_t7row6"} and not is_configurable("mutdet_t7row6")
    assert "mutdet_t7row6" not in {r.pretrain_method for r in runs_for_tables(7)}
    assert "mutdet_t7row6" in {r.pretrain_method for r in runs_for_tables(7, include_unresolved=True)}
    with pytest.raises(ValueError, match="cannot be configured"):
        method_config("mutdet_t7row6")


def test_method_names_decode_to_the_pretraining_ablation_configs():
    ablations = pytest.importorskip("mutdet_core.pretraining.ablations")
    TABLE1_ROWS, TABLE7_ROWS, ablation_config = ablations.TABLE1_ROWS, ablations.TABLE7_ROWS, ablations.ablation_config
    assert method_config("none") is None
    assert method_config("detreg") == {"method": "detreg"}
    assert method_config("mutdet") == {"method": "mutdet"}
    t7 = {c.row_index: c.run.pretrain_method for c in cells_for_table(7)}
    rows = {2: "row2_contrastive", 3: "row3_enhanced_embedding", 4: "row4_enhanced_feature",
            5: "row5_encoder_loss", 7: "row7_siamese_head"}
    assert set(rows.values()) | {"row1_detreg", "row8_mutdet"} == set(TABLE7_ROWS)
    for i, name in rows.items():
        assert method_config(t7[i]) == ablation_config("table7", name), (i, t7[i])
    t1 = {c.row_index: c.run.pretrain_method for c in cells_for_table(1)}
    for i, calibration in enumerate(TABLE1_ROWS, start=1):
        cfg = method_config(t1[i])
        expected = ablation_config("table1", calibration)
        assert cfg == expected or (t1[i] == "mutdet" and calibration == "siamese_head")
    assert t7[1] == "detreg" and t7[8] == "mutdet"
    # Every configurable pre-training the tables need is a valid build_pretrainer method config.
    check = pytest.importorskip("mutdet_core.pretraining.build").check_method_config
    for pre in pretrain_runs_for_tables(range(1, 10)):
        assert check(method_config(pre.pretrain_method)) in ("mutdet", "detreg", "updetr", "aligndet")


@pytest.mark.parametrize("name,error", [
    ("mutdet_ee_cl", "order"), ("mutdet_cl_cl", "order"), ("mutdet_xx", "unknown switch codes"),
    ("mutdet_cl_ee_ef_sh_efd", "at most one calibration"), ("mutdet_cl_sh", "needs the enhanced feature"),
    ("detr", "unknown pre-training method")])
def test_bad_method_names_are_rejected(name, error):
    with pytest.raises(ValueError, match=error):
        method_config(name)


def test_canonical_spelling_is_enforced():
    assert canonical_method("mutdet_cl_ee_ef_el_sh") == "mutdet"
    assert canonical_method("mutdet_cl_ee_ef_el_dcd") == "mutdet_cl_ee_ef_el_dcd"
    with pytest.raises(ValueError, match="spelled 'mutdet'"):
        RunKey("mutdet_cl_ee_ef_el_sh", "dota_train", "resnet50", "ars_detr", "dior_r", 1.0, 36)


@pytest.mark.parametrize("kwargs,error", [
    (dict(pretrain_dataset="none"), "exactly when"), (dict(backbone="resnet101"), "backbone"),
    (dict(finetune_dataset="dior-r"), "finetune_dataset"), (dict(fraction=10), "fraction"),
    (dict(schedule_epochs=50), "schedule_epochs"), (dict(detector="detr"), "detector")])
def test_run_keys_are_validated(kwargs, error):
    fields = dict(pretrain_method="mutdet", pretrain_dataset="dota_train", backbone="resnet50", detector="ars_detr",
                  finetune_dataset="dior_r", fraction=1.0, schedule_epochs=36)
    with pytest.raises(ValueError, match=error):
        RunKey(**{**fields, **kwargs})


def test_run_id_round_trips_and_eval_epoch_is_checked():
    for run in runs_for_tables(range(1, 10)):
        assert RunKey.from_run_id(run.run_id) == run
    assert MUTDET_DIOR.run_id == "mutdet.dota_train.resnet50.ars_detr.dior_r.f100.e36"
    twelve = RunKey("none", "none", "resnet50", "ars_detr", "ohd_sjtu_s", 1.0, 12)
    assert twelve.pretrain is None
    with pytest.raises(ValueError, match="after the end"):
        Cell(4, 1, "-", "x", twelve, 36, "AP50")
    with pytest.raises(ValueError, match="not a run id"):
        RunKey.from_run_id("mutdet.dior_r")


def test_unknown_table_number():
    with pytest.raises(ValueError, match="Tables 1-9"):
        cells_for_table(10)
