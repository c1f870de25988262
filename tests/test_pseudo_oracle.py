"""Oracle pseudo-boxes (``pseudo_boxes: ground_truth``): the labelled boxes as a boxes store, the rest of the
pseudo-label chain unchanged on it, its config key and its Snakemake plan."""
from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from mutdet_core.config import ConfigError, validate_config
from mutdet_core.geometry import obb2poly, poly_iou
from mutdet_core.pseudo_labels import (StageError, assign_pseudo_labels, extract_embeddings, fit_clusters,
                                       ground_truth_boxes, inspect_pseudo_labels, open_boxes, open_embeddings)
from mutdet_core.pseudo_labels.oracle import polygon_boxes
from mutdet_core.runs import PseudoLabelledTiles
from mutdet_core.synthetic.stage import check_synthetic_classes
from mutdet_core.tiling import TileStore
from mutdet_core.tiling.store import TileStoreWriter
from pseudo_label_fixtures import FAST_EMBEDDING, tile_store_path  # noqa: F401

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def _rect(cx, cy, w, h, angle):
    return cv2.boxPoints(((cx, cy), (w, h), angle)).reshape(8).astype(np.float32)


def test_polygon_boxes_are_the_labelled_rectangles_largest_first_thin_dropped_capped():
    labels = np.stack([_rect(50, 50, 20, 10, 30), _rect(200, 100, 60, 30, -70), _rect(300, 300, 40, 1.5, 10),
                       _rect(400, 500, 30, 30, 0)])
    rows, thin = polygon_boxes(labels)
    assert thin == 1  # the 1.5 px wide one
    assert rows["mask_area"].tolist() == [1800, 900, 200]  # largest first, the labelled polygon's area
    assert rows["mask_index"].tolist() == [-1, -1, -1] and rows["score"].tolist() == [1.0, 1.0, 1.0]
    r = rows["rbox"]
    assert (r[:, 2] >= r[:, 3]).all() and ((r[:, 4] >= -math.pi / 2) & (r[:, 4] < math.pi / 2)).all()
    iou = poly_iou(rows["polygon"].astype(np.float64), labels[[1, 3, 0]].astype(np.float64))
    assert np.diag(iou).min() > 0.999
    assert np.diag(poly_iou(obb2poly(r.astype(np.float64)), labels[[1, 3, 0]].astype(np.float64))).min() > 0.999
    capped, _ = polygon_boxes(labels, max_boxes=2)
    assert capped["mask_area"].tolist() == [1800, 900]
    empty, thin = polygon_boxes(np.zeros((0, 8), np.float32))
    assert thin == 0 and {k: v.shape for k, v in empty.items()} == {
        "rbox": (0, 5), "polygon": (0, 8), "mask_area": (0,), "mask_index": (0,), "score": (0,)}


@pytest.fixture(scope="module")
def oracle(tile_store_path, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("oracle")
    return {"tiles": tile_store_path, "out": out,
            "boxes": ground_truth_boxes(tile_store_path, out / "boxes.zarr", progress=False)}


def test_ground_truth_boxes_one_row_per_labelled_object(oracle):
    tiles, boxes = TileStore.open(oracle["tiles"]), open_boxes(oracle["boxes"])
    assert boxes.index["tile"].tolist() == tiles.index["tile"].tolist()
    assert boxes.attrs["params"]["source"] == "ground_truth"
    assert boxes.attrs["tile_fingerprint"] == tiles.attrs["fingerprint"]
    assert boxes.attrs["inputs"]["tiles"]["fingerprint"] == tiles.attrs["fingerprint"]
    total = 0
    for i in range(len(tiles)):
        labels = tiles.read_objects(i)["polygons"]
        sizes = [cv2.minAreaRect(p.reshape(4, 2))[1] for p in labels]
        assert boxes.read("rbox", i).shape[0] == sum(min(s) >= 2 for s in sizes)  # every labelled object
        total += len(labels)
        if not len(labels):
            continue
        assert (boxes.read("mask_index", i) == -1).all() and (boxes.read("score", i) == 1).all()
        assert np.all(np.diff(boxes.read("mask_area", i)) <= 0)  # largest first
        polygons = boxes.read("polygon", i).astype(np.float64)
        iou = poly_iou(polygons, labels.astype(np.float64))
        match = iou.argmax(axis=1)
        assert len(set(match.tolist())) == len(match)  # one box per object, one object per box
        best = iou[np.arange(len(match)), match]
        # the box is the label's minimum-area rectangle: it holds the labelled quadrilateral (IoU = area
        # ratio), exactly 1 for rectangular labels; DOTA's hand-drawn quadrilaterals are near-rectangles
        assert best.min() > 0.75 and np.median(best) > 0.9
        label_area = np.abs([cv2.contourArea(p.reshape(4, 2)) for p in labels[match]])
        box_area = boxes.read("rbox", i)[:, 2] * boxes.read("rbox", i)[:, 3]
        assert np.allclose(best, label_area / box_area, atol=2e-3)
        assert np.diag(poly_iou(obb2poly(boxes.read("rbox", i).astype(np.float64)), polygons)).min() > 0.999
    assert boxes.num_rows == total - boxes.attrs["objects_too_thin"] > 300
    assert boxes.offsets[-1] - boxes.offsets[-2] == 0  # the blank tile


def test_ground_truth_boxes_rerun_does_nothing_and_other_params_are_refused(oracle):
    store = Path(oracle["boxes"])
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    assert ground_truth_boxes(oracle["tiles"], store, progress=False) == store
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == before
    with pytest.raises(StageError, match="other inputs or parameters"):
        ground_truth_boxes(oracle["tiles"], store, max_boxes=10, progress=False)


def test_unlabelled_split_is_refused(tmp_path):
    rows = pd.DataFrame([{"tile": "a__64__0___0", "image_id": "a", "x": 0, "y": 0, "size": 64}])
    writer = TileStoreWriter(tmp_path / "t.zarr", rows, [0], {"classes": ["car"], "fingerprint": "unlabelled"})
    writer.write_tile(0, np.zeros((64, 64, 3), np.uint8), np.zeros((0, 8)), np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="no labelled objects"):
        ground_truth_boxes(writer.finish(), tmp_path / "b.zarr")
    assert not (tmp_path / "b.zarr").exists()


def test_chain_runs_unchanged_on_oracle_boxes(oracle):
    out = oracle["out"]
    embeddings = extract_embeddings(oracle["tiles"], oracle["boxes"], out / "embeddings.zarr", FAST_EMBEDDING,
                                    device="cpu", progress=False)
    assert np.array_equal(open_embeddings(embeddings).offsets, open_boxes(oracle["boxes"]).offsets)
    clusters = fit_clusters([embeddings], out / "clusters.zarr", pca_dim=8, num_clusters=4)
    labels = assign_pseudo_labels(embeddings, clusters, out / "pseudo.zarr")
    stats = inspect_pseudo_labels(labels, out / "inspect", num_tiles=1, num_clusters_shown=2, crops_per_cluster=2)
    assert stats["ground_truth"]["recall"] == 1.0 and stats["rows"] == open_boxes(oracle["boxes"]).num_rows
    data = PseudoLabelledTiles([oracle["tiles"]], [labels], clusters)  # what pre-training reads
    assert data.num_classes == 4
    assert np.array_equal(data.read_objects(0)["obbs"], open_boxes(oracle["boxes"]).read("rbox", 0))


def test_config_key_default_and_enum():
    base = {"synthetic": {"classes": ["plane", "ship"]},
            "datasets": {"synthetic": {"source": "synthetic", "classes": ["plane", "ship"]},
                         "synthetic_oracle": {"source": "synthetic", "classes": ["plane", "ship"],
                                              "pseudo_boxes": "ground_truth"}}}
    config = validate_config(copy.deepcopy(base))
    assert config["datasets"]["synthetic"]["pseudo_boxes"] == "proposals"
    assert config["datasets"]["synthetic_oracle"]["pseudo_boxes"] == "ground_truth"
    assert check_synthetic_classes(config) == []  # a second synthetic entry is a valid synthetic dataset
    bad = copy.deepcopy(base)
    bad["datasets"]["synthetic_oracle"]["pseudo_boxes"] = "foo"
    with pytest.raises(ConfigError, match="datasets/synthetic_oracle/pseudo_boxes"):
        validate_config(bad)


def _job_blocks(output: str, rule: str) -> list[str]:
    return [block for block in output.split("\nrule ")[1:] if block.startswith(f"{rule}:")]


@pytest.mark.snakemake
def test_dry_run_plans_oracle_boxes_without_masks(repo_root, tmp_path):
    config = {
        "synthetic": {"seed": 3, "images": {"train": 2, "test": 1}, "min_side": 500, "max_side": 900},
        "datasets": {
            "synthetic": {"source": "synthetic", "classes": "synthetic", "splits": ["train", "test"]},
            "synthetic_oracle": {"source": "synthetic", "classes": "synthetic", "splits": ["train"],
                                 "pseudo_boxes": "ground_truth"},
        },
        "pseudo_labels": {"pretrain_sets": {"syn": ["synthetic/train"], "oracle": ["synthetic_oracle/train"]}},
        "pretrain": {"methods": {"mutdet": {"method": "mutdet"}}},
        "finetune": {"datasets": {"synthetic": {"train": "train", "test": "test"}}, "pretrain_set": "oracle",
                     "inits": ["none", "mutdet"], "fractions": [1.0], "seeds": [1]},
        "tables": [],
    }
    cfg = tmp_path / "oracle.yaml"
    cfg.write_text(yaml.safe_dump(config))
    # the default target (pre-training on the oracle set) and the proposals' pseudo-labels of the other set
    targets = ["all", "results/pseudo_labels/syn/synthetic/train/pseudo_labels.zarr/zarr.json"]
    proc = subprocess.run([SNAKEMAKE, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
                           "-n", *targets, "--configfile", str(cfg)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    masks = _job_blocks(proc.stdout, "pseudo_masks")
    assert len(masks) == 1 and "dataset=synthetic," in masks[0]  # none for synthetic_oracle
    boxes = {("synthetic_oracle," in b): b for b in _job_blocks(proc.stdout, "pseudo_boxes")}
    assert len(boxes) == 2
    assert "input: results/tiles/synthetic_oracle/train.zarr/zarr.json\n" in boxes[True], boxes[True]
    assert "input: results/pseudo_labels/synthetic/train/masks.zarr/zarr.json\n" in boxes[False], boxes[False]
    pretrain = _job_blocks(proc.stdout, "pretrain")
    assert any("results/pseudo_labels/oracle/synthetic_oracle/train/pseudo_labels.zarr" in b for b in pretrain)
    assert any("results/data/synthetic_oracle" in b for b in _job_blocks(proc.stdout, "generate_synthetic"))
    assert not (tmp_path / "results").exists()
    # an unlabelled split has no boxes to take: stopped at DAG-building time
    config["datasets"]["synthetic_oracle"]["labelled"] = False
    cfg.write_text(yaml.safe_dump(config))
    proc = subprocess.run([SNAKEMAKE, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
                           "-n", "--configfile", str(cfg)], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "datasets.synthetic_oracle: pseudo_boxes 'ground_truth' needs labelled splits" in proc.stdout + proc.stderr
