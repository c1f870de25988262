"""Run-level stages (mutdet_core/runs): pre-training on pseudo-labels, fine-tuning on a data fraction,
prediction with patch merging and evaluation, on a small generated synthetic dataset tiled into 320 px tiles
and pseudo-labelled with the classical proposals and a random ResNet-18 (tiny detector, 2 epochs)."""
from __future__ import annotations

import json
import logging
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mutdet_core.data import collate_detection, read_id_list, select_fraction
from mutdet_core.datasets.dota import read_dota_folder, read_task1_folder, write_task1_folder
from mutdet_core.engine import load_checkpoint
from mutdet_core.engine.checkpoint import seed_everything
from mutdet_core.evaluation.merge import tile_origin
from mutdet_core.pretraining import build_pretrainer
from mutdet_core.pseudo_labels import (StageError, assign_pseudo_labels, extract_embeddings, fit_clusters,
                                       generate_masks, masks_to_boxes, open_boxes, open_pseudo_labels)
from mutdet_core.runs import (DataConfig, PseudoLabelledTiles, RunFolderError, build_pretraining_dataset,
                              evaluate_run, finetune_run, predict_run, pretrain_run)
from mutdet_core.runs.inference import predict_tiles
from mutdet_core.synthetic import generate_synthetic_dataset
from mutdet_core.tiling import TileStore, TilingParams
from mutdet_core.tiling.tiler import tile_split

torch.set_num_threads(1)

TINY = {"variant": "ars_detr", "backbone": {"name": "tiny", "width": 16}, "d_model": 64, "n_heads": 4,
        "ffn_dim": 128, "num_encoder_layers": 1, "num_decoder_layers": 2, "num_queries": 30, "num_dn_queries": 12,
        "dropout": 0.0}
TRAIN = {"epochs": 2, "batch_size": 2, "warmup_iters": 2, "num_workers": 0, "tensorboard": False,
         "progress_bar": False, "log_interval": 2}
PRE_DATA = {"resize": 256, "max_objects": 20}
FT_DATA = {"resize": 256}
TILE = 320  # tiles are resized 320 -> 256: every stage must undo a real resize


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict:
    """Synthetic train (3 images) and test (2 images) splits, their tile stores, and the pseudo-label chain
    on the training tiles: ``{name: path}`` plus ``classes``. Shared: tests must not modify these files."""
    root = tmp_path_factory.mktemp("runs_chain")
    summary = generate_synthetic_dataset(root / "data", {"train": 3, "test": 2}, image_size=(400, 560), seed=0)
    classes = summary["classes"]
    params = TilingParams(sizes=(TILE,), gaps=(64,))
    paths = {"root": root, "classes": classes, "labels": root / "data" / "test" / "labelTxt"}
    for split in ("train", "test"):
        records = read_dota_folder(root / "data" / split / "images", root / "data" / split / "labelTxt")
        paths[split] = tile_split(records, root / f"{split}.zarr", params, classes, dataset="synthetic", split=split,
                                  progress=False)
    masks = generate_masks(paths["train"], root / "masks.zarr", "classical", {"num_scales": 3, "max_masks": 40},
                           progress=False)
    boxes = masks_to_boxes(masks, root / "boxes.zarr", progress=False)
    embeddings = extract_embeddings(paths["train"], boxes, root / "embeddings.zarr",
                                    {"arch": "resnet18", "input_size": 256, "crop_size": 32, "batch_size": 64},
                                    device="cpu", progress=False)
    paths["clusters"] = fit_clusters([embeddings], root / "clusters.zarr", pca_dim=256, num_clusters=8,
                                     too_few_boxes="adapt")
    paths["pseudo_labels"] = assign_pseudo_labels(embeddings, paths["clusters"], root / "pseudo_labels.zarr")
    return paths


@pytest.fixture(scope="module")
def pretrained(chain, tmp_path_factory):
    """``get(method)``: the final checkpoint of a 2-epoch pre-training run of ``method``, run once."""
    runs = {}
    out = tmp_path_factory.mktemp("pretrain")

    def get(method: str) -> Path:
        if method not in runs:
            runs[method] = pretrain_run([chain["train"]], [chain["pseudo_labels"]], chain["clusters"], out / method,
                                        {"method": method}, TINY, TRAIN, PRE_DATA, device="cpu")
        return runs[method]

    return get


# ------------------------------------------------------------------------------------------- pre-training data
def test_pretraining_dataset_serves_boxes_classes_and_embeddings_of_the_pseudo_labels(chain, caplog):
    tiles = PseudoLabelledTiles([chain["train"]], [chain["pseudo_labels"]], chain["clusters"])
    labels = open_pseudo_labels(chain["pseudo_labels"])
    rbox = open_boxes(labels.attrs["inputs"]["boxes"]["path"]).read_all("rbox")
    assert len(tiles) == len(TileStore.open(chain["train"])) and tiles.embedding_dim == 256
    assert tiles.attrs["classes"] == [f"cluster_{k}" for k in range(tiles.num_classes)]
    data = DataConfig.from_dict({"resize": 256, "flip_ratios": [0, 0, 0], "max_objects": 5}, "pretrain")
    with caplog.at_level(logging.WARNING, logger="mutdet_core.runs.pseudo_dataset"):
        dataset = build_pretraining_dataset(tiles, data)
    # the cap drops boxes here, and the log says how many of the pseudo-labels pre-training never sees
    assert dataset.num_dropped_objects > 0
    assert f"max_objects 5 drops {dataset.num_dropped_objects} of {dataset.num_valid_objects}" in caplog.text
    sample = dataset[(0, 123)]
    i = int(dataset.tile_indices[0])
    rows = labels.rows(i)
    first = slice(rows.start, min(rows.stop, rows.start + 5))  # the largest masks come first
    n = first.stop - first.start
    assert n > 0 and len(sample["labels"]) == n
    np.testing.assert_array_equal(sample["labels"], labels.read_all("pseudo_class")[first])
    np.testing.assert_allclose(sample["embeddings"], labels.read_all("embedding")[first], rtol=0, atol=0)
    scale = 256 / TILE
    np.testing.assert_allclose(sample["obbs"][:, :2], rbox[first, :2] * scale, rtol=1e-5)
    areas = rbox[first, 2] * rbox[first, 3]
    np.testing.assert_allclose(sample["obbs"][:, 2] * sample["obbs"][:, 3], areas * scale ** 2, rtol=1e-4)
    batch = collate_detection([sample, dataset[(1, 7)]])
    target = batch.targets[0]
    assert target["embeddings"].shape == (n, 256) and target["labels"].dtype == torch.int64
    assert batch.images.shape[-2:] == (256, 256)
    assert 0 <= float(target["boxes"].min()) and float(target["boxes"].max()) <= 1


def test_pseudo_labels_of_another_tile_store_are_refused(chain):
    with pytest.raises(StageError, match="fingerprint"):
        PseudoLabelledTiles([chain["test"]], [chain["pseudo_labels"]], chain["clusters"])
    with pytest.raises(ValueError, match="one pseudo-labels store per tile store"):
        PseudoLabelledTiles([chain["train"], chain["test"]], [chain["pseudo_labels"]], chain["clusters"])


def test_pretrain_rejects_an_embedding_width_other_than_the_clusters(chain, tmp_path):
    with pytest.raises(ValueError, match="embedding_dim 32 but the pseudo-label embeddings .* 256-d"):
        pretrain_run([chain["train"]], [chain["pseudo_labels"]], chain["clusters"], tmp_path / "run",
                     {"method": "detreg", "embedding_dim": 32}, TINY, TRAIN, PRE_DATA, device="cpu")
    with pytest.raises(ValueError, match="unknown pretrain data config keys \\['flips'\\]"):
        pretrain_run([chain["train"]], [chain["pseudo_labels"]], chain["clusters"], tmp_path / "run",
                     {"method": "detreg"}, TINY, TRAIN, {"flips": 0.5}, device="cpu")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------- the whole chain
@pytest.mark.parametrize("method", ["detreg", "mutdet"])
def test_pretrain_finetune_predict_evaluate(method, chain, pretrained, tmp_path):
    final = pretrained(method)
    run = final.parent
    assert final == run / "epoch_2.pth" and (run / "last.pth").is_file() and (run / "losses.csv").is_file()
    summary = json.loads((run / "pretrain.json").read_text())
    num_classes = int(open_pseudo_labels(chain["pseudo_labels"]).attrs["num_clusters"])
    assert summary["method"] == method and summary["num_classes"] == num_classes
    assert summary["iterations"] == 2 * math.ceil(summary["tiles_used"] / 2) and summary["epochs"] == 2
    assert math.isfinite(summary["loss_start"]) and math.isfinite(summary["loss_end"]) and summary["seconds"] > 0

    # The backbone was frozen (SPEC 4): its weights are the seeded initial ones; the decoder trained.
    state = load_checkpoint(final)
    meta = state["meta"]
    assert meta["kind"] == "pretrain" and meta["detector"]["backbone"]["freeze_all"] is True
    seed_everything(TRAIN.get("seed", 42))
    initial, _ = build_pretrainer(meta["method_cfg"], meta["detector"])
    initial = initial.state_dict()
    backbone = [k for k in initial if k.startswith("detector.backbone.") and initial[k].is_floating_point()]
    assert backbone and all(torch.equal(state["model"][k], initial[k]) for k in backbone)
    assert not torch.equal(state["model"]["detector.decoder.layers.0.norm1.weight"],
                           initial["detector.decoder.layers.0.norm1.weight"])
    assert state["model"]["detector.heads.class_branches.0.weight"].shape[0] == num_classes

    # Fine-tune half of the training images from the pre-training checkpoint.
    ft = tmp_path / "finetune"
    checkpoints = finetune_run(chain["train"], ft, TINY, dict(TRAIN, checkpoint_epochs=[1]), FT_DATA, fraction=0.5,
                               fraction_seed=3, init_checkpoint=final, device="cpu")
    assert sorted(checkpoints) == [1, 2] and all(p.is_file() for p in checkpoints.values())
    store = TileStore.open(chain["train"])
    chosen = read_id_list(ft / "image_ids.txt")
    assert chosen == select_fraction(store.index["image_id"], 0.5, 3) and len(chosen) == 2
    transfer = json.loads((ft / "transfer.json").read_text())
    assert sorted(transfer["new"]) == sorted(["denoising.label_embedding.weight"]
                                             + [f"heads.class_branches.{i}.{p}" for i in range(3)
                                                for p in ("weight", "bias")])
    method_modules = {"detreg": ("embedding_head.",),
                      "mutdet": ("mutual_enhancement.", "embedding_head.", "encoder_embedding_head.")}[method]
    assert all(k.startswith(method_modules) or k[len("detector."):] in transfer["new"] for k in transfer["skipped"])
    assert transfer["num_loaded"] == len(transfer["loaded"]) > 50
    tuned = load_checkpoint(checkpoints[2])
    assert tuned["meta"]["classes"] == chain["classes"] and tuned["meta"]["init_checkpoint"] == str(final)

    # Predict on the test tiles and merge to full images.
    # A low score threshold: after 2 tiny epochs few scores pass 0.05, and the merge checks need detections.
    pred = predict_run(checkpoints[2], chain["test"], tmp_path / "predict", data_cfg=FT_DATA, score_thr=0.005,
                       device="cpu")
    merged_dir, tiles_dir = Path(pred["merged_dir"]), Path(pred["tiles_dir"])
    assert sorted(p.name for p in merged_dir.glob("Task1_*.txt")) == sorted(f"Task1_{c}.txt" for c in chain["classes"])
    with zipfile.ZipFile(pred["zip"]) as zf:
        assert sorted(zf.namelist()) == sorted(p.name for p in merged_dir.glob("Task1_*.txt"))
    test_tiles = TileStore.open(chain["test"])
    tile_dets = read_task1_folder(tiles_dir)
    merged = read_task1_folder(merged_dir)
    assert sum(map(len, tile_dets.values())) == sum(pred["num_tile_dets"].values()) > 0
    assert 0 < sum(map(len, merged.values())) <= sum(map(len, tile_dets.values()))
    names = set(test_tiles.index["tile"])
    for c, dets in tile_dets.items():
        for tile, score, poly in dets:
            assert tile in names and score >= 0.005
            centre = poly.reshape(4, 2).mean(0)
            assert (-1 <= centre).all() and (centre <= TILE + 1).all(), (tile, centre)  # tile pixels
    # Every merged detection is a tile detection shifted by its tile's offset.
    for c, dets in merged.items():
        shifted = {}
        for tile, score, poly in tile_dets[c]:
            image_id, x, y, _ = tile_origin(tile, "mmrotate")
            shifted.setdefault((image_id, round(score, 6)), []).append(poly + np.array([x, y] * 4))
        for image_id, score, poly in dets:
            candidates = shifted[(image_id, round(score, 6))]
            assert min(np.abs(p - poly).max() for p in candidates) < 0.011

    # Evaluate against the test labels.
    out = tmp_path / "eval"
    result = evaluate_run(merged_dir, chain["labels"], chain["classes"], "dota", out / "r.json", out / "r.md",
                          out / "r.csv")
    for key in ("AP50", "AP75", "AP50:95"):
        assert 0.0 <= result[key] <= 1.0
    assert json.loads((out / "r.json").read_text())["num_images"] == 2
    assert (out / "r.md").read_text().startswith("| class") and (out / "r.csv").read_text().startswith("class,")


def test_predict_maps_boxes_back_to_tile_pixels(chain):
    """A stub detector that always sees the same box (normalised to its padded 256 px input): the written
    polygon is that box in the 320 px tile, for every tile of every batch."""

    class Stub(torch.nn.Module):
        def forward(self, images, masks):
            batch = images.shape[0]
            logits = torch.full((batch, 2, len(chain["classes"])), -9.0)
            logits[:, 0, 2] = 3.0  # one confident detection of class 2 per tile
            boxes = torch.tensor([0.5, 0.25, 0.2, 0.1]).expand(batch, 2, 4)
            return {"pred_logits": logits, "pred_boxes": boxes, "pred_angles": torch.zeros(batch, 2)}

    from mutdet_core.data import build_detection_dataset
    from mutdet_core.models.postprocess import PostProcess

    store = TileStore.open(chain["test"])
    dataset = build_detection_dataset(store, train=False, resize=256, filter_empty=False)
    dets = predict_tiles(Stub(), PostProcess(10), dataset, chain["classes"], torch.device("cpu"), batch_size=3)
    assert set(dets) == {chain["classes"][2]}
    found = dets[chain["classes"][2]]
    assert [t for t, _, _ in found] == store.index["tile"].tolist()
    s = TILE / 256 * 256  # normalised to the 256 px input, then the 0.8 resize undone
    expected = np.array([0.4, 0.2, 0.6, 0.2, 0.6, 0.3, 0.4, 0.3]) * s
    for _, score, poly in found:
        assert score == pytest.approx(1 / (1 + math.exp(-3.0)), rel=1e-6)
        assert sorted(map(tuple, poly.reshape(4, 2).round(3))) == sorted(map(tuple, expected.reshape(4, 2).round(3)))


@pytest.mark.parametrize("method", ["updetr", "aligndet"])
def test_baseline_methods_pretrain_through_the_same_run(method, chain, tmp_path):
    final = pretrain_run([chain["train"]], [chain["pseudo_labels"]], chain["clusters"], tmp_path / method,
                         {"method": method}, TINY, dict(TRAIN, epochs=1), PRE_DATA, device="cpu")
    summary = json.loads((tmp_path / method / "pretrain.json").read_text())
    assert final.is_file() and summary["method"] == method and summary["iterations"] > 0
    assert math.isfinite(summary["loss_end"])
    # A rerun finds the finished run and returns it without training.
    before = final.stat().st_mtime_ns
    assert pretrain_run([chain["train"]], [chain["pseudo_labels"]], chain["clusters"], tmp_path / method,
                        {"method": method}, TINY, dict(TRAIN, epochs=1), PRE_DATA, device="cpu") == final
    assert final.stat().st_mtime_ns == before


# ------------------------------------------------------------------------------------------- fine-tuning
def test_finetune_from_scratch_and_rerun(chain, tmp_path):
    run = tmp_path / "scratch"
    train = dict(TRAIN, epochs=1)
    checkpoints = finetune_run(chain["train"], run, TINY, train, FT_DATA, device="cpu")
    assert list(checkpoints) == [1] and not (run / "transfer.json").exists()
    assert read_id_list(run / "image_ids.txt") == sorted(TileStore.open(chain["train"]).index["image_id"].unique())
    meta = load_checkpoint(checkpoints[1])["meta"]
    assert meta["init_checkpoint"] is None and meta["detector"]["num_classes"] == len(chain["classes"])

    # A finished run is left alone.
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    assert finetune_run(chain["train"], run, TINY, train, FT_DATA, device="cpu") == checkpoints
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before

    # Other settings in the same folder: an error, or a fresh run with overwrite.
    with pytest.raises(RunFolderError, match="lr: 0.0001 -> 0.0002"):
        finetune_run(chain["train"], run, TINY, dict(train, lr=2e-4), FT_DATA, device="cpu")
    fingerprint = json.loads((run / "run.json").read_text())["fingerprint"]
    finetune_run(chain["train"], run, TINY, dict(train, lr=2e-4), FT_DATA, device="cpu", overwrite=True)
    assert json.loads((run / "run.json").read_text())["fingerprint"] != fingerprint
    assert json.loads((run / "finetune.json").read_text())["train"]["lr"] == 2e-4


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1, "0.5", float("nan")])
def test_bad_fraction_is_an_error_before_anything_is_written(fraction, chain, tmp_path):
    with pytest.raises(ValueError, match="data fraction must be"):
        finetune_run(chain["train"], tmp_path / "run", TINY, TRAIN, FT_DATA, fraction=fraction, device="cpu")
    assert not (tmp_path / "run").exists()


def test_checkpoint_of_another_variant_is_a_clear_error(chain, pretrained, tmp_path):
    final = pretrained("detreg")
    expected = "checkpoint of detector variant 'ars_detr', but this run builds 'arcsl_ddetr'"
    with pytest.raises(ValueError, match=expected):
        finetune_run(chain["train"], tmp_path / "run", dict(TINY, variant="arcsl_ddetr"), TRAIN, FT_DATA,
                     init_checkpoint=final, device="cpu")
    # Without the recorded config (a foreign file) the shapes still tell: regression angles have 5-d boxes.
    bare = tmp_path / "bare.pth"
    torch.save({"model": load_checkpoint(final)["model"]}, bare)
    with pytest.raises(ValueError, match="another detector variant"):
        finetune_run(chain["train"], tmp_path / "run", dict(TINY, variant="rotated_ddetr"), TRAIN, FT_DATA,
                     init_checkpoint=bare, device="cpu")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="a pre-training checkpoint"):
        predict_run(final, chain["test"], tmp_path / "predict", device="cpu")


# ------------------------------------------------------------------------------------------- evaluation
def test_evaluate_run_scores_the_ground_truth_as_perfect(chain, tmp_path):
    records = read_dota_folder(chain["labels"].parent / "images", chain["labels"])
    dets = {}
    for r in records:
        for poly, name in zip(r.polygons, r.classes):
            dets.setdefault(name, []).append((r.image_id, 1.0, poly))
    write_task1_folder(dets, tmp_path / "merged", chain["classes"])
    result = evaluate_run(tmp_path / "merged", chain["labels"], chain["classes"], "mmrotate", tmp_path / "r.json")
    assert result["AP50"] == result["AP75"] == result["AP50:95"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "r.json").read_text())["AP50:95"] == pytest.approx(1.0)
    # dota convention: classes without ground truth count as 0; the others are perfect. Records work too.
    dota = evaluate_run(tmp_path / "merged", records, chain["classes"], "dota")
    present = [c for c in chain["classes"] if dota["per_class"][c]["num_gt"] > 0]
    assert present and all(dota["per_class"][c]["AP50"] == pytest.approx(1.0) for c in present)
    assert dota["AP50"] == pytest.approx(len(present) / len(chain["classes"]))
    with pytest.raises(FileNotFoundError, match="run the predict stage first"):
        evaluate_run(tmp_path / "missing", chain["labels"], chain["classes"])


def test_data_config_defaults_and_errors():
    assert DataConfig.from_dict(None, "pretrain").to_dict() == {"resize": 1024, "flip_ratios": [0.25] * 3,
                                                                 "max_objects": 1000}
    assert DataConfig.from_dict({"resize": [800, 600]}, "finetune").resize == (800, 600)
    with pytest.raises(ValueError, match="resize must be"):
        DataConfig.from_dict({"resize": 0}, "finetune")
    with pytest.raises(ValueError, match="flip_ratios"):
        DataConfig.from_dict({"flip_ratios": [0.5, 0.5, 0.5]}, "finetune")
    with pytest.raises(ValueError, match="unknown finetune data config keys \\['max_object'\\]"):
        DataConfig.from_dict({"max_object": 3}, "finetune")


def test_finetune_in_two_ddp_processes_from_one_job(chain, tmp_path):
    """What a rule with resources gpu=2 does in its single SLURM task: launch() starts two DDP processes
    (gloo on CPU here), rank 0 writes the run folder and its result comes back."""
    from mutdet_core.engine.launch import launch

    out = tmp_path / "ddp"
    checkpoints = launch(finetune_run, 2, chain["train"], out, TINY, dict(TRAIN, epochs=1), FT_DATA, device="cpu")
    assert checkpoints == {1: out / "epoch_1.pth"} and checkpoints[1].is_file()
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["world_size"] == 2
    # each process took half of each global batch: fewer iterations than one process over the same data
    single = finetune_run(chain["train"], tmp_path / "single", TINY, dict(TRAIN, epochs=1), FT_DATA, device="cpu")
    assert single[1].is_file()
    assert summary["iterations"] < json.loads((tmp_path / "single/finetune.json").read_text())["iterations"]
