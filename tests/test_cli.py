"""The `mutdet` command: every stage reachable outside Snakemake, bad input as one clear line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mutdet_core.cli import main

MUTDET = str(Path(sys.executable).with_name("mutdet"))


def test_help_lists_every_stage():
    out = subprocess.run([MUTDET, "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("tile", "export-tiles", "generate-synthetic", "inspect", "export-pseudo-labels", "evaluate", "merge",
                "check-config", "info"):
        assert cmd in out


def test_tile_export_and_info_on_real_images(shared_data, tmp_path, capsys):
    root = shared_data / "dota_sample"
    store = tmp_path / "s.zarr"
    assert main(["tile", str(store), "--images", str(root / "images"), "--labels", str(root / "labelTxt")]) == 0
    assert main(["info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 6 and info["tiles"] > 6
    assert main(["export-tiles", str(store), str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out/images").glob("*.png"))) == info["tiles"]
    # a second export into the same folder is refused, nothing overwritten
    assert main(["export-tiles", str(store), str(tmp_path / "out")]) == 2
    assert main(["tile", str(store), "--images", str(root / "images"), "--labels", str(root / "labelTxt")]) == 2


def test_check_config(repo_root, tmp_path):
    assert main(["check-config", str(repo_root / "config.yaml")]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: {x: {source: dota, root: /nonexistent/dota}}\n")
    assert main(["check-config", str(bad)]) == 1


def test_evaluate_on_devkit_case(shared_data, tmp_path):
    case = shared_data / "dota_eval_case"
    if not case.is_dir():
        pytest.skip("dota_eval_case fixture missing")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--dets", str(case / "result_classname"), "--labels", str(case / "row_DOTA_labels"),
                 "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    # dota convention over all 15 DOTA classes (4 have detections): the devkit's mAP for this case
    assert summary["convention"] == "dota" and summary["num_images"] == 4
    assert abs(summary["AP50"] - 0.1904813794578209) < 1e-9
    assert summary["AP75"] < summary["AP50"]
