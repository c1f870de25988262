"""Inspection pictures/statistics, export to DOTA txt + .npy, the CLI functions, an empty tile end to end."""
from __future__ import annotations

import argparse
import csv
import json

import cv2
import numpy as np
import pytest

from mutdet_core.datasets.dota import read_dota_txt
from mutdet_core.pseudo_labels import (StageError, export_pseudo_labels, inspect_pseudo_labels, inspect_store,
                                       masks_to_boxes, open_boxes, open_pseudo_labels)
from mutdet_core.pseudo_labels.cli import (add_export_pseudo_labels_arguments, add_inspect_arguments,
                                           export_pseudo_labels_cli, inspect_cli)
from mutdet_core.pseudo_labels.quality import cluster_purity
from pseudo_label_fixtures import chain, tile_store_path  # noqa: F401  (fixtures)


def test_empty_tile_passes_through_every_stage(chain):
    from mutdet_core.pseudo_labels import open_stage

    for name in ("masks", "boxes", "embeddings", "pseudo_labels"):
        store = open_stage(chain[name], ("mutdet-masks", "mutdet-boxes", "mutdet-embeddings", "mutdet-pseudo-labels"))
        assert store.index["tile"].tolist()[2] == "blank__800__0___0"
        assert store.offsets[3] - store.offsets[2] == 0 and store.index["rows"].tolist()[2] == 0


def test_inspect_pseudo_labels_writes_pictures_and_statistics(chain, tmp_path):
    from mutdet_core.pseudo_labels import open_stage

    stats = inspect_pseudo_labels(chain["pseudo_labels"], tmp_path, num_tiles=2, num_clusters_shown=3,
                                  crops_per_cluster=5)
    written = json.loads((tmp_path / "stats.json").read_text())
    assert written["rows"] == stats["rows"] == open_pseudo_labels(chain["pseudo_labels"]).num_rows
    assert len(list((tmp_path / "tiles").glob("*.png"))) == 2
    assert len(list((tmp_path / "clusters").glob("cluster_*.png"))) == 3
    for name in ("boxes_per_tile", "box_size", "aspect_ratio", "cluster_sizes", "clusters_montage"):
        image = cv2.imread(str(tmp_path / f"{name}.png"))
        assert image is not None and image.std() > 5, name  # a real picture, not a blank canvas
    tile = cv2.imread(str(next((tmp_path / "tiles").glob("P1888*.png"))))
    assert tile.shape[1:] == (800, 3) and tile.shape[0] > 800  # the tile and its legend strip
    assert (tmp_path / "report.md").read_text().count("cluster_") >= 3
    cap = written["proposal_cap"]["masks"]  # the classical proposer's cap, FAST_CLASSICAL max_masks 60
    masks = open_stage(chain["masks"], "mutdet-masks")
    assert cap["key"] == "max_masks" and cap["cap"] == 60
    assert cap["tiles_at_cap"] == int((np.diff(masks.offsets) == 60).sum()) and cap["tiles"] == 3
    assert written["proposal_cap"]["boxes"]["tiles_at_cap"] == 0  # 60 masks < max_boxes 1000
    gt = written["ground_truth"]
    assert gt["matched_boxes"] == sum(int(r["matched_gt_boxes"]) for r in
                                      csv.DictReader(open(tmp_path / "clusters.csv")))
    assert gt["gt_objects"] == 64 + 311 + 2  # 64 vehicles (P1888) + ships and harbours kept in the P0706 window
    assert 0 < gt["recall"] <= gt["recall_at_0.3"] <= 1 and gt["recall_per_class"]["large-vehicle"]["objects"] == 50
    assert 0 < gt["cluster_purity"] <= 1 and written["clusters"]["num_clusters"] == 8
    assert written["aspect_ratio"]["min"] >= 1
    largest = next(iter(written["clusters"]["largest"]))  # e.g. "cluster_5"
    montage = cv2.imread(str(tmp_path / "clusters" / f"{largest}.png"))
    assert montage.shape[0] >= 64 and montage.shape[1] == 8 * 66


def test_inspect_masks_and_boxes_stores(chain, tmp_path):
    masks_stats = inspect_store(chain["masks"], tmp_path / "m", num_tiles=1)
    assert masks_stats["format"] == "mutdet-masks" and (tmp_path / "m" / "mask_area.png").is_file()
    assert "ground_truth" not in masks_stats  # masks have no boxes to compare
    boxes_stats = inspect_store(chain["boxes"], tmp_path / "b", num_tiles=1)
    assert boxes_stats["ground_truth"]["recall"] == pytest.approx(
        inspect_store(chain["pseudo_labels"], tmp_path / "p", num_tiles=0)["ground_truth"]["recall"])


def test_inspect_refuses_a_boxes_store_of_another_run(chain, tmp_path):
    other = masks_to_boxes(chain["masks"], tmp_path / "boxes.zarr", max_boxes=5, progress=False)
    with pytest.raises(StageError, match="is not the boxes store"):
        inspect_store(chain["pseudo_labels"], tmp_path / "i", boxes_store=other)


def test_purity():
    assert cluster_purity(np.array([0, 0, 1, 1, 1]), np.array([2, 2, 0, 0, 1])) == pytest.approx(0.8)


def test_export_writes_dota_txt_and_row_aligned_embeddings(chain, tmp_path):
    manifest = export_pseudo_labels(chain["pseudo_labels"], tmp_path)
    pseudo, boxes = open_pseudo_labels(chain["pseudo_labels"]), open_boxes(chain["boxes"])
    assert (tmp_path / "classes.txt").read_text().split() == [f"cluster_{k}" for k in range(8)]
    assert manifest["embedding_dim"] == 16 and manifest["sources"][0]["boxes"] == pseudo.num_rows
    for i, name in enumerate(pseudo.index["tile"]):
        record = read_dota_txt(tmp_path / "annfiles" / f"{name}.txt")
        embeddings = np.load(tmp_path / "embeddings" / f"{name}.npy")
        assert len(record.classes) == len(embeddings) == pseudo.rows(i).stop - pseudo.rows(i).start
        assert embeddings.shape[1] == 16 and embeddings.dtype == np.float32
        assert np.allclose(embeddings, pseudo.read("embedding", i))
        assert record.classes == [f"cluster_{c}" for c in pseudo.read("pseudo_class", i)]
        assert np.allclose(record.polygons, boxes.read("polygon", i), atol=1e-3)
    with pytest.raises(FileExistsError, match="not empty"):
        export_pseudo_labels(chain["pseudo_labels"], tmp_path)


def test_cli_functions(chain, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_inspect_arguments(parser)
    args = parser.parse_args([str(chain["pseudo_labels"]), "--out", str(tmp_path / "i"), "--tiles", "1"])
    assert inspect_cli(args) == 0 and (tmp_path / "i" / "stats.json").is_file()
    assert '"recall"' in capsys.readouterr().out
    parser = argparse.ArgumentParser()
    add_export_pseudo_labels_arguments(parser)
    args = parser.parse_args([str(chain["pseudo_labels"]), str(tmp_path / "export")])
    assert export_pseudo_labels_cli(args) == 0
    assert len(list((tmp_path / "export" / "annfiles").glob("*.txt"))) == 3
