"""Config checks that must stop a bad config at validation / DAG time, not in a job (issue 15, item 6):
unsafe names, tiling gaps, typos in the free-form pseudo-label blocks, empty data folders and weight files,
broken YAML."""
from __future__ import annotations

import copy
import re

import pytest
import yaml

from mutdet_core.config import ConfigError, load_config, validate_config
from mutdet_core.datasets.splits import check_dataset_layout
from mutdet_core.runs.plan import check_checkpoint_files

SYNTHETIC = {"source": "synthetic", "classes": "synthetic", "splits": ["train", "test"]}


# ------------------------------------------------------------------------------------ (a) names

@pytest.mark.parametrize("patch, key", [
    ({"datasets": {"../../escape": {"source": "synthetic"}}}, "datasets: name '../../escape'"),
    ({"datasets": {"mine": {"source": "synthetic", "splits": ["../up"]}}}, "datasets/mine/splits/0: name '../up'"),
    ({"pseudo_labels": {"pretrain_sets": {"a/b": ["synthetic/train"]}}}, "pseudo_labels/pretrain_sets: name 'a/b'"),
    ({"models": {"..": {}}}, "models: name '..'"),
    ({"pretrain": {"methods": {"../m": {"method": "mutdet"}}}}, "pretrain/methods: name '../m'"),
    ({"finetune": {"datasets": {"/abs": {}}}}, "finetune/datasets: name '/abs'"),
    ({"synthetic": {"images": {"../x": 2}}}, "synthetic/images: name '../x'"),
])
def test_names_that_become_folders_are_refused(patch, key):
    with pytest.raises(ConfigError, match=re.escape(key) + ".*letters, digits, '_' and '-'"):
        validate_config(copy.deepcopy(patch))


# ------------------------------------------------------------------------------------ (b) tiling

@pytest.mark.parametrize("tiling, message", [
    ({"sizes": [800], "gaps": [800]}, "datasets/mine/tiling: gap 800 >= size 800"),
    ({"sizes": [800, 1024], "gaps": [200, 1100]}, "datasets/mine/tiling: gap 1100 >= size 1024"),
    ({"sizes": [800, 1024], "gaps": [200]}, "datasets/mine/tiling: 2 sizes [800, 1024] but 1 gaps [200]"),
    ({"sizes": [16], "gaps": [15], "rates": [32.0]}, "datasets/mine/tiling: at rate 32.0 size 16 / gap 15"),
])
def test_tiling_gap_must_be_smaller_than_size(tiling, message):
    config = {"datasets": {"mine": {**SYNTHETIC, "tiling": tiling}}}
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(config)
    ok = {"datasets": {"mine": {**SYNTHETIC, "tiling": {"sizes": [800, 1024], "gaps": [200, 0]}}}}
    validate_config(ok)  # a gap of 0 and a smaller gap are fine


# ------------------------------------------------------------------------------------ (c) free-form blocks

@pytest.mark.parametrize("pseudo, message", [
    ({"masks": {"classical": {"max_mask": 100}}},
     "pseudo_labels/masks/classical: unknown keys ['max_mask']; known keys: ["),
    ({"masks": {"sam": {"point_per_side": 16}}}, "pseudo_labels/masks/sam: unknown keys ['point_per_side']"),
    ({"embeddings": {"arch": "resnet18", "batchsize": 8}}, "pseudo_labels/embeddings: unknown keys ['batchsize']"),
    ({"clustering": {"num_cluster": 8}}, "pseudo_labels/clustering: unknown keys ['num_cluster']"),
    ({"clustering": {"overwrite": True}}, "pseudo_labels/clustering: unknown keys ['overwrite']"),  # the rule's
    ({"inspect": {"numtiles": 3}}, "pseudo_labels/inspect: unknown keys ['numtiles']"),
    ({"masks": {"classical": {"num_scales": 1}}}, "pseudo_labels/masks/classical: graph segmentation: scale"),
    ({"masks": {"sam": {"model_type": "vit_x"}}}, "pseudo_labels/masks/sam: SAM model_type 'vit_x'"),
    ({"embeddings": {"arch": "resnet9"}}, "pseudo_labels/embeddings: embeddings: arch 'resnet9'"),
])
def test_pseudo_label_blocks_are_checked_against_their_receivers(pseudo, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config({"pseudo_labels": copy.deepcopy(pseudo)})


def test_unknown_key_message_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        validate_config({"pseudo_labels": {"masks": {"classical": {"max_mask": 100}},
                                           "inspect": {"num_tile": 2}}})
    text = str(info.value)
    assert "'max_masks'" in text and "'num_scales'" in text  # GraphSegmentationParams fields
    assert "'num_tiles'" in text and "'crops_per_cluster'" in text  # inspect_store keywords
    assert "'path'" not in text and "'out_dir'" not in text  # the rule gives those


def test_repository_configs_still_validate(repo_root):
    for name in ("config.yaml", "configs/mini.yaml", "configs/paper.yaml"):
        load_config(repo_root / name)


# ------------------------------------------------------------------------------------ (d) folders, weights

def _image(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "P0001.png").write_bytes(b"\x89PNG placeholder")


@pytest.mark.parametrize("source, images", [
    ("dota", "train/images"), ("fair1m", "train/images"), ("ohd_sjtu", "train/images"),
    ("hrrsd", "train/JPEGImages"), ("hrrsd", "train/OPT2017/JPEGImages"),
])
def test_image_folder_without_images_is_refused(tmp_path, source, images):
    entry = {"source": source, "root": str(tmp_path), "splits": ["train"]}
    folder = tmp_path / images
    (tmp_path / "train").mkdir()
    if "OPT2017" in images:
        (tmp_path / "train/OPT2017").mkdir()
    assert check_dataset_layout(entry, "mine") == [f"dataset 'mine': image folder {folder} does not exist"]
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not an image")
    problems = check_dataset_layout(entry, "mine")
    assert len(problems) == 1 and f"image folder {folder} holds no image file" in problems[0]
    _image(folder)
    assert check_dataset_layout(entry, "mine") == []


def test_dior_r_root_needs_its_official_subfolders(tmp_path):
    entry = {"source": "dior_r", "root": str(tmp_path), "splits": ["train", "val", "test"]}
    problems = check_dataset_layout(entry, "dior")
    for path in ("Annotations/Oriented Bounding Boxes", "ImageSets/Main", "JPEGImages-trainval", "JPEGImages-test"):
        assert sum(str(tmp_path / path) in p for p in problems) == 1, (path, problems)
    assert len(problems) == 4  # train and val share JPEGImages-trainval: said once
    (tmp_path / "Annotations/Oriented Bounding Boxes").mkdir(parents=True)
    (tmp_path / "ImageSets/Main").mkdir(parents=True)
    (tmp_path / "JPEGImages-trainval").mkdir()
    _image(tmp_path / "JPEGImages-test")
    assert check_dataset_layout(entry, "dior") == [
        f"dataset 'dior': image folder {tmp_path / 'JPEGImages-trainval'} holds no image file "
        f"(.png .jpg .jpeg .tif .tiff .bmp .webp); copy the images there or fix 'root'"]
    _image(tmp_path / "JPEGImages-trainval")
    assert check_dataset_layout(entry, "dior") == []
    assert check_dataset_layout({**entry, "splits": ["trainval", "minival"]}, "dior") == [
        "dataset 'dior': DIOR-R split 'minival' is not one of ['train', 'val', 'test', 'trainval']"]


def test_synthetic_dataset_needs_no_folder():
    # generated by the pipeline: nothing exists at DAG time
    assert check_dataset_layout({"source": "synthetic", "splits": ["train"]}, "synthetic") == []


def test_empty_weight_file_is_refused(tmp_path):
    weights = tmp_path / "resnet18.pth"
    weights.write_bytes(b"")
    config = validate_config({"pseudo_labels": {"embeddings": {"arch": "resnet18", "weights": str(weights)}}})
    assert check_checkpoint_files(config) == [
        f"pseudo_labels.embeddings.weights: checkpoint file {weights} is empty (0 bytes); copy the real weights "
        f"there"]
    weights.write_bytes(b"not empty")
    assert check_checkpoint_files(config) == []


def test_check_config_names_empty_folders_and_weights(tmp_path, capsys):
    from mutdet_core.cli import main

    (tmp_path / "dota/train/images").mkdir(parents=True)
    (tmp_path / "r18.pth").write_bytes(b"")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "datasets": {"mine": {"source": "dota", "root": str(tmp_path / "dota"), "splits": ["train"]}},
        "pseudo_labels": {"embeddings": {"arch": "resnet18", "weights": str(tmp_path / "r18.pth")}}}))
    assert main(["check-config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert f"image folder {tmp_path / 'dota/train/images'} holds no image file" in err
    assert f"checkpoint file {tmp_path / 'r18.pth'} is empty (0 bytes)" in err


# ------------------------------------------------------------------------------------ (e) broken YAML

def test_broken_yaml_names_file_line_and_column(tmp_path, capsys):
    from mutdet_core.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("results_dir: results\ndatasets:\n  mine: {source: dota\n  other: 1\n")
    assert main(["check-config", str(bad)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "not valid YAML" in line]
    assert len(lines) == 1 and f"{bad}:4:8: not valid YAML: while parsing a flow mapping" in lines[0], lines
    bad.write_text("a: 1\n b: 2\n")
    with pytest.raises(ConfigError, match=re.escape(f"{bad}:2:3: not valid YAML: mapping values are not allowed")):
        load_config(bad)


# ------------------------------------------------------------------------------------ the dry run

@pytest.mark.snakemake
def test_empty_image_folder_stops_the_dry_run(repo_root, tmp_path):
    from test_workflow import run_snakemake, write_config

    (tmp_path / "dota/train/images").mkdir(parents=True)
    cfg = write_config(tmp_path / "empty.yaml", datasets={
        "mine": {"source": "dota", "root": str(tmp_path / "dota"), "splits": ["train"]}})
    proc = run_snakemake(repo_root, tmp_path, cfg, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"image folder {tmp_path / 'dota/train/images'} holds no image file" in out, out[-3000:]
    assert "Job stats" not in out and not (tmp_path / "results").exists()


def test_flat_dota_folder_is_one_split(shared_data):
    """A flat images/ + labelTxt/ folder (DOTA's own samples, most users' imagery) reads as one split."""
    from mutdet_core.datasets.splits import check_dataset_layout, load_split, split_inputs

    entry = {"source": "dota", "root": str(shared_data / "dota_sample"), "classes": "dota_v1", "splits": ["all"]}
    assert check_dataset_layout(entry, "mine") == []
    assert split_inputs(entry, "mine", "all") == [shared_data / "dota_sample"]
    records = load_split(entry, "mine", "all")
    assert len(records) == 6 and sum(len(r.classes) for r in records) == 694
    entry["splits"] = ["train", "val"]
    problems = check_dataset_layout(entry, "mine")
    assert len(problems) == 1 and "one flat folder" in problems[0] and "splits: [all]" in problems[0]
