# Config validation (at DAG-building time, before any job runs) and the named input functions of all rules.
import os
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from mutdet_core.config import ConfigError, validate_config
from mutdet_core.datasets.splits import check_dataset_layout, split_inputs

try:
    validate_config(config, source="the Snakemake config")
except ConfigError as err:
    raise WorkflowError(str(err))

_layout_problems = [p for name, entry in config["datasets"].items() for p in check_dataset_layout(entry, name)]
if _layout_problems:
    raise WorkflowError("dataset layout problems:\n  " + "\n  ".join(_layout_problems))

RESULTS = config["results_dir"]
DATASETS = config["datasets"]


wildcard_constraints:
    dataset="|".join(DATASETS) or "NO_DATASET",
    split="[A-Za-z0-9_-]+",


def tile_store_paths():
    """Every tile store the config asks for."""
    return [
        f"{RESULTS}/tiles/{name}/{split}.zarr"
        for name, entry in DATASETS.items()
        for split in entry["splits"]
    ]


# "dataset/split" names; os.path.split is the plainest way to cut them in two
PRETRAIN_SPLITS = [os.path.split(s) for s in config["pseudo_labels"]["pretrain_splits"]]
_unknown_pretrain = [f"{d}/{s}" for d, s in PRETRAIN_SPLITS if d not in DATASETS or s not in DATASETS[d]["splits"]]
if _unknown_pretrain:
    raise WorkflowError(f"pseudo_labels.pretrain_splits names unknown dataset splits: {_unknown_pretrain}")


def get_pretrain_embeddings(wildcards):
    """Embedding stores of the whole pre-training set (PCA and k-means are fitted on all of them)."""
    return [f"{RESULTS}/pseudo_labels/{d}/{s}/embeddings.zarr" for d, s in PRETRAIN_SPLITS]


def pseudo_label_outputs():
    """Pseudo-label stores and their inspection folders for every pre-training split."""
    out = []
    for d, s in PRETRAIN_SPLITS:
        out += [f"{RESULTS}/pseudo_labels/{d}/{s}/pseudo_labels.zarr", f"{RESULTS}/pseudo_labels/{d}/{s}/inspect"]
    return out


def get_final_outputs():
    """Targets of `rule all`, extended stage by stage."""
    return tile_store_paths() + pseudo_label_outputs()


def get_tile_inputs(wildcards):
    """The raw dataset a tile store is cut from (the generated folder for synthetic data)."""
    entry = DATASETS[wildcards.dataset]
    if entry["source"] == "synthetic":
        return [f"{RESULTS}/data/{wildcards.dataset}"]
    return [str(p) for p in split_inputs(entry, wildcards.dataset, wildcards.split, RESULTS)]


def get_dataset_entry(wildcards):
    return DATASETS[wildcards.dataset]


def is_generated_dataset(wildcards):
    """True for datasets the pipeline generates (their root is the rule's input folder)."""
    return DATASETS[wildcards.dataset]["source"] == "synthetic"
