"""The fine-tuning grid: per-fraction schedules, inits of another pre-training set, learning-curve epochs."""
from __future__ import annotations

import copy

import pytest

from mutdet_core.config import load_config
from mutdet_core.reporting import ap_curve_frame, write_ap_curves
from mutdet_core.runs import plan
from mutdet_core.tables.render import method_label


@pytest.fixture()
def config(repo_root):
    cfg = load_config(repo_root / "configs/mini.yaml")
    return copy.deepcopy(cfg)


def test_evaluation_epochs_are_evenly_spaced_and_end_at_the_last():
    assert plan.evaluation_epochs(12, 3) == (4, 8, 12)
    assert plan.evaluation_epochs(60, 3) == (20, 40, 60)
    assert plan.evaluation_epochs(12, 1) == (12,)
    assert plan.evaluation_epochs(3, 10) == (1, 2, 3)
    assert plan.evaluation_epochs(12, 2, extra=[5]) == (5, 6, 12)


def test_fraction_epochs_init_fractions_and_oracle_inits(config):
    runs = plan.grid_plans(config)
    by_init = {}
    for run in runs:
        by_init.setdefault(run.init, set()).add((run.fraction, run.epochs, run.eval_epochs))
    assert by_init["none"] == {(0.1, 60, (20, 40, 60)), (1.0, 12, (4, 8, 12))}
    assert by_init["mutdet.synthetic_pretrain"] == by_init["none"]
    assert by_init["mutdet.synthetic_oracle"] == {(0.1, 60, (20, 40, 60))}  # init_fractions: 10 % only
    assert len(runs) == 3 * 2 * 3 + 2 * 3
    labels = {plan.grid_init_label(config, run) for run in runs}
    assert labels == {"none", "detreg", "mutdet", "detreg.synthetic_oracle", "mutdet.synthetic_oracle"}
    assert {p.pretrain_set for p in plan.pretrain_plans(config)} == {"synthetic_pretrain", "synthetic_oracle"}
    # the training config of a 10 % run writes the checkpoints its curve reads
    ten = next(r for r in runs if r.fraction == 0.1)
    assert plan.finetune_train_config(config, ten)["checkpoint_epochs"] == [20, 40]
    assert plan.check_run_configs(config) == []


@pytest.mark.parametrize("edit, message", [
    (lambda f: f["inits"].append("mutdet.nowhere"), "names pre-training set 'nowhere'"),
    (lambda f: f["init_fractions"].update({"detreg": [0.5]}), "[0.5] not in finetune.fractions"),
    (lambda f: f["init_fractions"].update({"updetr": [0.1]}), "'updetr' is not in finetune.inits"),
    (lambda f: f["fraction_epochs"].update({0.3: 5}), "fraction_epochs: 0.3 is not in finetune.fractions"),
])
def test_grid_config_mistakes_are_named(config, edit, message):
    edit(config["finetune"])
    problems = plan.check_run_configs(config)
    assert any(message in p for p in problems), problems


def test_method_labels():
    assert method_label("none") == "-"
    assert method_label("mutdet") == "MutDet"
    assert method_label("detreg.synthetic_oracle") == "DETReg (synthetic_oracle)"


def test_ap_curves_table_and_picture(tmp_path):
    def summary(ap50):
        return {"mAP": {"AP50": ap50, "AP75": ap50 / 2}}

    cells = [[init, fraction, seed, epoch] for init in ("none", "mutdet", "mutdet.oracle")
             for fraction, epochs in ((0.1, (20, 40)), (1.0, (4, 8))) for seed in (1, 2) for epoch in epochs]
    evaluations = [summary(0.1 * (i % 7)) for i in range(len(cells))]
    frame = write_ap_curves(cells, evaluations, tmp_path / "curves.png", tmp_path / "curves.csv")
    assert list(frame.columns) == ["init", "fraction", "seed", "epoch", "AP50", "AP75"]
    assert len(frame) == len(cells) and frame["AP50"].max() == pytest.approx(60.0)
    assert (tmp_path / "curves.png").stat().st_size > 10_000 and (tmp_path / "curves.csv").is_file()
    with pytest.raises(ValueError, match="3 cells but 2 evaluation files"):
        ap_curve_frame(cells[:3], evaluations[:2])
    with pytest.raises(ValueError, match="has no 'mAP'"):
        ap_curve_frame(cells[:1], [{"classes": {}}])
