# Pseudo-labels (SPEC 2.2-2.6): masks -> oriented boxes -> crop embeddings -> PCA + k-means -> classes.
# Masks, boxes and embeddings once per split; the clustering once per pre-training set (on all its splits),
# then each split of the set is assigned to it: <set>/<dataset>/<split>/pseudo_labels.zarr. Each store is
# tracked by its zarr.json (store() in common.smk: no Snakemake file inside a Zarr store).
# priority: the chain to pre-training is the critical path; on a few cores, fine-tuning runs that need no
# pre-training wait behind it instead of delaying every pre-trained run.

PL = f"{RESULTS}/pseudo_labels"


rule pseudo_masks:
    input:
        tiles=store(f"{RESULTS}/tiles/{{dataset}}/{{split}}.zarr"),
    output:
        store(f"{PL}/{{dataset}}/{{split}}/masks.zarr"),
    log:
        f"{RESULTS}/logs/pseudo_masks/{{dataset}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_masks/{{dataset}}/{{split}}.tsv"
    params:
        masks=config["pseudo_labels"]["masks"],
    priority: 10
    threads: 2
    resources:
        mem_mb=16000,
        runtime=720,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/pseudo_masks.py"


rule pseudo_boxes:
    input:
        # masks.zarr, or the tile store for a dataset with pseudo_boxes: ground_truth (the oracle diagnostic)
        unpack(get_box_source),
    output:
        store(f"{PL}/{{dataset}}/{{split}}/boxes.zarr"),
    log:
        f"{RESULTS}/logs/pseudo_boxes/{{dataset}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_boxes/{{dataset}}/{{split}}.tsv"
    params:
        max_boxes=config["pseudo_labels"]["max_boxes"],
    priority: 10
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/pseudo_boxes.py"


rule pseudo_embeddings:
    input:
        tiles=store(f"{RESULTS}/tiles/{{dataset}}/{{split}}.zarr"),
        boxes=store(f"{PL}/{{dataset}}/{{split}}/boxes.zarr"),
    output:
        store(f"{PL}/{{dataset}}/{{split}}/embeddings.zarr"),
    log:
        f"{RESULTS}/logs/pseudo_embeddings/{{dataset}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_embeddings/{{dataset}}/{{split}}.tsv"
    params:
        embeddings=config["pseudo_labels"]["embeddings"],
        device=config["pseudo_labels"]["device"],
    priority: 10
    threads: 2
    resources:
        mem_mb=16000,
        runtime=480,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/pseudo_embeddings.py"


rule pseudo_clusters:
    input:
        get_set_embeddings,
    output:
        store(f"{PL}/{{pretrain_set}}/clusters.zarr"),
    log:
        f"{RESULTS}/logs/pseudo_clusters/{{pretrain_set}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_clusters/{{pretrain_set}}.tsv"
    params:
        clustering=config["pseudo_labels"]["clustering"],
    priority: 10
    threads: 2
    resources:
        mem_mb=32000,
        runtime=240,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/pseudo_clusters.py"


rule pseudo_assign:
    input:
        embeddings=store(f"{PL}/{{dataset}}/{{split}}/embeddings.zarr"),
        clusters=store(f"{PL}/{{pretrain_set}}/clusters.zarr"),
    output:
        store(f"{PL}/{{pretrain_set}}/{{dataset}}/{{split}}/pseudo_labels.zarr"),
    log:
        f"{RESULTS}/logs/pseudo_assign/{{pretrain_set}}/{{dataset}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_assign/{{pretrain_set}}/{{dataset}}/{{split}}.tsv"
    priority: 10
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/pseudo_assign.py"


rule pseudo_inspect:
    input:
        pseudo_labels=store(f"{PL}/{{pretrain_set}}/{{dataset}}/{{split}}/pseudo_labels.zarr"),
    output:
        report(
            directory(f"{PL}/{{pretrain_set}}/{{dataset}}/{{split}}/inspect"),
            patterns=["{picture}.png"],
            caption="../report/pseudo_labels.rst",
            category="Pseudo-labels",
            subcategory="{pretrain_set}: {dataset}/{split}",
        ),
    log:
        f"{RESULTS}/logs/pseudo_inspect/{{pretrain_set}}/{{dataset}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_inspect/{{pretrain_set}}/{{dataset}}/{{split}}.tsv"
    params:
        inspect=config["pseudo_labels"]["inspect"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/pseudo_inspect.py"
