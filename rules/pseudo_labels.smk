# Pseudo-labels (SPEC 2.2-2.6): masks -> oriented boxes -> crop embeddings -> PCA + k-means -> classes.
# Per pre-training split, except the clustering, which is fitted once on the whole pre-training set.

PL = f"{RESULTS}/pseudo_labels"


rule pseudo_masks:
    input:
        tiles=f"{RESULTS}/tiles/{{dataset}}/{{split}}.zarr",
    output:
        directory(f"{PL}/{{dataset}}/{{split}}/masks.zarr"),
    log:
        f"{RESULTS}/logs/pseudo_masks/{{dataset}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_masks/{{dataset}}/{{split}}.tsv"
    params:
        masks=config["pseudo_labels"]["masks"],
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
        masks=f"{PL}/{{dataset}}/{{split}}/masks.zarr",
    output:
        directory(f"{PL}/{{dataset}}/{{split}}/boxes.zarr"),
    log:
        f"{RESULTS}/logs/pseudo_boxes/{{dataset}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_boxes/{{dataset}}/{{split}}.tsv"
    params:
        max_boxes=config["pseudo_labels"]["max_boxes"],
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
        tiles=f"{RESULTS}/tiles/{{dataset}}/{{split}}.zarr",
        boxes=f"{PL}/{{dataset}}/{{split}}/boxes.zarr",
    output:
        directory(f"{PL}/{{dataset}}/{{split}}/embeddings.zarr"),
    log:
        f"{RESULTS}/logs/pseudo_embeddings/{{dataset}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_embeddings/{{dataset}}/{{split}}.tsv"
    params:
        embeddings=config["pseudo_labels"]["embeddings"],
        device=config["pseudo_labels"]["device"],
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
        get_pretrain_embeddings,
    output:
        directory(f"{PL}/clusters.zarr"),
    log:
        f"{RESULTS}/logs/pseudo_clusters.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_clusters.tsv"
    params:
        clustering=config["pseudo_labels"]["clustering"],
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
        embeddings=f"{PL}/{{dataset}}/{{split}}/embeddings.zarr",
        clusters=f"{PL}/clusters.zarr",
    output:
        directory(f"{PL}/{{dataset}}/{{split}}/pseudo_labels.zarr"),
    log:
        f"{RESULTS}/logs/pseudo_assign/{{dataset}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_assign/{{dataset}}/{{split}}.tsv"
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
        pseudo_labels=f"{PL}/{{dataset}}/{{split}}/pseudo_labels.zarr",
    output:
        directory(f"{PL}/{{dataset}}/{{split}}/inspect"),
    log:
        f"{RESULTS}/logs/pseudo_inspect/{{dataset}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_inspect/{{dataset}}/{{split}}.tsv"
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
