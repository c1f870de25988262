# Config validation (at DAG-building time, before any job runs), the run matrix, and the named input
# functions of all rules.
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from mutdet_core.config import ConfigError, validate_config
from mutdet_core.datasets.splits import check_dataset_layout, split_inputs
from mutdet_core.runs import plan
from mutdet_core.synthetic.stage import check_synthetic_classes

try:
    validate_config(config, source="the Snakemake config")
except ConfigError as err:
    raise WorkflowError(str(err))


def _warn_placeholder_partition():
    """profiles/slurm ships `slurm_partition: debug` as a placeholder: say so before any job is submitted,
    dry runs included. A warning, not an error: a real cluster may have a partition named debug. Only in
    the submitting process (each cluster job parses this file again, in remote mode)."""
    from snakemake.logging import logger

    partition = (workflow.resource_settings.default_resources or {}).get("slurm_partition")
    raw = str(getattr(partition, "raw", partition) or "").strip("'\" ")
    if raw == "debug" and not workflow.remote_exec and not workflow.subprocess_exec:
        logger.warning(
            "slurm_partition is 'debug', the placeholder of profiles/slurm/config.yaml: set your cluster's "
            "partition there (`sinfo -s` lists them) or delete the line to use its default partition. "
            "Ignore this if 'debug' is the partition you mean (it usually has a short time limit)."
        )


_warn_placeholder_partition()


def _stop_on(problems, what):
    if problems:
        raise WorkflowError(f"{what}:\n  " + "\n  ".join(problems))


RESULTS = config["results_dir"]
DATASETS = config["datasets"]
# pre-training set name -> [(dataset, split)]; os.path.split is the plainest way to cut "dataset/split"
PRETRAIN_SETS = {
    name: [os.path.split(s) for s in splits]
    for name, splits in config["pseudo_labels"]["pretrain_sets"].items()
}
_stop_on(
    [
        f"pseudo_labels.pretrain_sets.{name}: {d}/{s} is not a configured dataset split"
        for name, splits in PRETRAIN_SETS.items()
        for d, s in splits
        if d not in DATASETS or s not in DATASETS[d]["splits"]
    ],
    "pre-training set problems",
)
_stop_on(plan.check_run_configs(config), "pre-training / fine-tuning config problems")
_stop_on(check_synthetic_classes(config), "synthetic dataset problems")
_stop_on(
    [p for name, entry in DATASETS.items() for p in check_dataset_layout(entry, name)],
    "dataset layout problems",
)
_stop_on(
    [
        f"datasets.{name}: pseudo_boxes 'ground_truth' needs labelled splits, but labelled is false"
        for name, entry in DATASETS.items()
        if entry.get("pseudo_boxes") == "ground_truth" and not entry.get("labelled", True)
    ],
    "oracle pseudo-box problems",
)
_stop_on(plan.check_checkpoint_files(config), "missing checkpoint files")

FINETUNE = config["finetune"]
FINETUNE_RUNS = {run.path: run for run in plan.finetune_plans(config)}
GRID_RUNS = plan.grid_plans(config)
PRETRAIN_RUNS = {run.path: run for run in plan.pretrain_plans(config)}
PRETRAIN_EPOCHS = plan.pretrain_epochs(config)
# pseudo-labelled splits: those of the pre-training sets that some pre-training run uses
USED_PRETRAIN_SETS = list(dict.fromkeys(run.pretrain_set for run in PRETRAIN_RUNS.values()))


def _alternatives(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "NO_MATCH"


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    split="[A-Za-z0-9_-]+",
    pretrain_set=_alternatives(PRETRAIN_SETS),
    model=_alternatives(plan.model_names(config)),
    method="[A-Za-z0-9_-]+",
    init=r"none|[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
    fraction="[0-9.]+",
    epochs="[0-9]+",
    seed="[0-9]+",
    epoch="[0-9]+",


# ------------------------------------------------------------------ tiles and pseudo-labels


def store(path):
    """The file that stands for a Zarr store in the rules: its group zarr.json, written with the rest of the
    store in one swap (mutdet_core.swap). A directory() output would get Snakemake's .snakemake_timestamp
    inside the store, a foreign file that Zarr warns about on every listing. The scripts pass this path on
    as it is: every store opener and writer accepts a store's folder or its zarr.json. Targets on the command
    line: results/tiles/<dataset>/<split>.zarr/zarr.json."""
    return f"{path}/zarr.json"


def tile_store_paths():
    """Every tile store the config asks for."""
    return [
        store(f"{RESULTS}/tiles/{name}/{split}.zarr")
        for name, entry in DATASETS.items()
        for split in entry["splits"]
    ]


def raw_split_inputs(dataset, split):
    """The raw files of one dataset split (the generated folder for synthetic data)."""
    entry = DATASETS[dataset]
    if entry["source"] == "synthetic":
        return [f"{RESULTS}/data/{dataset}"]
    return [str(p) for p in split_inputs(entry, dataset, split, RESULTS)]


def get_tile_inputs(wildcards):
    """The raw dataset a tile store is cut from."""
    return raw_split_inputs(wildcards.dataset, wildcards.split)


def get_dataset_entry(wildcards):
    """The dataset's config entry, as the tiling and evaluation jobs see it: without pseudo_boxes, which
    concerns the pseudo-labels only (so adding or changing it reruns no tiling or evaluation job)."""
    return {k: v for k, v in DATASETS[wildcards.dataset].items() if k != "pseudo_boxes"}


def is_generated_dataset(wildcards):
    """True for datasets the pipeline generates (their root is the rule's input folder)."""
    return DATASETS[wildcards.dataset]["source"] == "synthetic"


def get_box_source(wildcards):
    """What the pseudo_boxes job reads (unpacked): the masks store ({"masks": ...}, pseudo_boxes 'proposals')
    or, for the oracle diagnostic (pseudo_boxes 'ground_truth'), the tile store whose labelled boxes it takes
    ({"tiles": ...}); no masks job is then planned for the split."""
    if DATASETS[wildcards.dataset].get("pseudo_boxes", "proposals") == "ground_truth":
        return {"tiles": store(f"{RESULTS}/tiles/{wildcards.dataset}/{wildcards.split}.zarr")}
    return {"masks": store(f"{RESULTS}/pseudo_labels/{wildcards.dataset}/{wildcards.split}/masks.zarr")}


def get_set_embeddings(wildcards):
    """Embedding stores of a whole pre-training set (PCA and k-means are fitted on all of them)."""
    return [store(f"{RESULTS}/pseudo_labels/{d}/{s}/embeddings.zarr") for d, s in PRETRAIN_SETS[wildcards.pretrain_set]]


def pseudo_label_outputs():
    """Pseudo-label stores and their inspection folders, for every pre-training set some run uses (every
    set when no run uses one, so pseudo-labels alone can be built and inspected)."""
    out = []
    for name in USED_PRETRAIN_SETS or PRETRAIN_SETS:
        for d, s in PRETRAIN_SETS[name]:
            base = f"{RESULTS}/pseudo_labels/{name}/{d}/{s}"
            out += [store(f"{base}/pseudo_labels.zarr"), f"{base}/inspect"]
    return out


# ------------------------------------------------------------------ pre-training


def get_pretrain_run(wildcards):
    path = f"{wildcards.pretrain_set}/{wildcards.model}/{wildcards.method}"
    if path in PRETRAIN_RUNS:
        return PRETRAIN_RUNS[path]
    return plan.PretrainPlan(wildcards.method, wildcards.pretrain_set, wildcards.model)


def get_pretrain_tile_stores(wildcards):
    """Tile stores of the pre-training set, in the set's order."""
    return [store(f"{RESULTS}/tiles/{d}/{s}.zarr") for d, s in PRETRAIN_SETS[wildcards.pretrain_set]]


def get_pretrain_pseudo_labels(wildcards):
    """Pseudo-label stores of the pre-training set, same order as get_pretrain_tile_stores."""
    name = wildcards.pretrain_set
    return [store(f"{RESULTS}/pseudo_labels/{name}/{d}/{s}/pseudo_labels.zarr") for d, s in PRETRAIN_SETS[name]]


def get_method_config(wildcards):
    return plan.method_config(config, wildcards.method)


def get_pretrain_detector(wildcards):
    return plan.pretrain_detector_config(config, wildcards.model)


# ------------------------------------------------------------------ fine-tuning, prediction, evaluation


def get_finetune_run(wildcards):
    """The planned run of these wildcards (a run outside the plan: evaluated at its last epoch)."""
    run = plan.FinetunePlan(
        wildcards.dataset,
        wildcards.model,
        wildcards.init,
        float(wildcards.fraction),
        int(wildcards.epochs),
        int(wildcards.seed),
        (int(wildcards.epochs),),
    )
    return FINETUNE_RUNS.get(run.path, run)


def get_finetune_train_store(wildcards):
    split = FINETUNE["datasets"][wildcards.dataset].get("train", "train")
    return store(f"{RESULTS}/tiles/{wildcards.dataset}/{split}.zarr")


def get_finetune_test_store(wildcards):
    return store(f"{RESULTS}/tiles/{wildcards.dataset}/{get_test_split(wildcards)}.zarr")


def get_init_checkpoint(wildcards):
    """The pre-training checkpoint a fine-tuning run starts from; none for init 'none'."""
    pretrain = get_finetune_run(wildcards).pretrain
    if pretrain is None:
        return []
    return [f"{RESULTS}/pretrain/{pretrain.path}/epoch_{PRETRAIN_EPOCHS}.pth"]


def get_finetune_detector(wildcards):
    return plan.detector_config(config, wildcards.model)


def get_finetune_train_config(wildcards):
    return plan.finetune_train_config(config, get_finetune_run(wildcards))


def get_test_split(wildcards):
    return FINETUNE["datasets"][wildcards.dataset].get("test", "test")


def get_test_convention(wildcards):
    return FINETUNE["datasets"][wildcards.dataset].get("convention", "dota")


def get_test_labels(wildcards):
    """The raw test split the evaluation reads its labels from."""
    return raw_split_inputs(wildcards.dataset, get_test_split(wildcards))


def evaluation_path(run, epoch):
    return f"{RESULTS}/evaluate/{run.path}/epoch_{epoch}.json"


def evaluation_paths():
    """Evaluation summaries of every planned fine-tuning run, at its evaluation epochs."""
    return [evaluation_path(run, e) for run in FINETUNE_RUNS.values() for e in run.eval_epochs]


# ------------------------------------------------------------------ tables


def table5_small_runs(dataset):
    """The grid's runs on one fine-tuning dataset (the cells of its small-scale Table 5)."""
    return [run for run in GRID_RUNS if run.dataset == dataset]


def get_table5_small_evaluations(wildcards):
    return [evaluation_path(run, run.epochs) for run in table5_small_runs(wildcards.dataset)]


def get_table5_small_cells(wildcards):
    """[init, fraction, seed] of each file of get_table5_small_evaluations, same order; the init is the method
    for runs pre-trained on the grid's set, method.set for those of another set (the oracle's)."""
    return [[plan.grid_init_label(config, run), run.fraction, run.seed] for run in table5_small_runs(wildcards.dataset)]


def get_ap_curve_evaluations(wildcards):
    """Every evaluation of the grid's runs on one dataset (each run at its eval epochs)."""
    return [evaluation_path(run, e) for run in table5_small_runs(wildcards.dataset) for e in run.eval_epochs]


def get_ap_curve_cells(wildcards):
    """[init, fraction, seed, epoch] of each file of get_ap_curve_evaluations, same order."""
    return [
        [plan.grid_init_label(config, run), run.fraction, run.seed, e]
        for run in table5_small_runs(wildcards.dataset)
        for e in run.eval_epochs
    ]


def ap_curve_outputs():
    """AP-per-epoch pictures of each fine-tuning dataset whose grid runs are evaluated at several epochs."""
    if int(FINETUNE.get("eval_points", 1)) < 2:
        return []
    return [f"{RESULTS}/report/ap_curves_{d}.png" for d in FINETUNE["datasets"] if table5_small_runs(d)]


def paper_table_evaluations(number):
    return [evaluation_path(run, epoch) for _, run, epoch in plan.table_cells(config, number)]


def paper_table_cells(number):
    """[paper run id, eval epoch, seed] of each file of paper_table_evaluations, same order."""
    return [[run_id, epoch, run.seed] for run_id, run, epoch in plan.table_cells(config, number)]


def table_outputs():
    """The tables the default target writes (config `tables`)."""
    out = []
    for table in config["tables"]:
        if table == "table5_small":
            out += [f"{RESULTS}/tables/table5_small_{d}.md" for d in FINETUNE["datasets"] if table5_small_runs(d)]
        else:
            out.append(f"{RESULTS}/tables/{table}.md")
    return out


def get_training_runs(wildcards):
    """The final checkpoint of every planned pre-training and fine-tuning run (their folders hold losses.csv)."""
    pretrain = [f"{RESULTS}/pretrain/{path}/epoch_{PRETRAIN_EPOCHS}.pth" for path in PRETRAIN_RUNS]
    finetune = [f"{RESULTS}/finetune/{path}/epoch_{run.epochs}.pth" for path, run in FINETUNE_RUNS.items()]
    return pretrain + finetune


def get_final_outputs():
    """The default target: tiles, pseudo-labels (with their inspection pictures), every evaluation, the
    tables and the loss curves."""
    curves = [f"{RESULTS}/report/training_curves"] if FINETUNE_RUNS else []
    return (
        tile_store_paths()
        + pseudo_label_outputs()
        + evaluation_paths()
        + table_outputs()
        + curves
        + ap_curve_outputs()
    )
