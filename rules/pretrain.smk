# Detection pre-training (SPEC 2.7 and 4): one run per (pre-training set, model, method) -- MutDet, its
# ablations, DETReg, UP-DETR, AlignDet -- on the set's pseudo-labels. The final checkpoint is the declared
# output; the run folder keeps last.pth, so an interrupted job resumes where it stopped.

PT_RUN = "{pretrain_set}/{model}/{method}"


rule pretrain:
    input:
        tiles=get_pretrain_tile_stores,
        pseudo_labels=get_pretrain_pseudo_labels,
        clusters=store(f"{RESULTS}/pseudo_labels/{{pretrain_set}}/clusters.zarr"),
    output:
        f"{RESULTS}/pretrain/{PT_RUN}/epoch_{PRETRAIN_EPOCHS}.pth",
    log:
        f"{RESULTS}/logs/pretrain/{PT_RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretrain/{PT_RUN}.tsv"
    params:
        method=get_method_config,
        detector=get_pretrain_detector,
        train=config["pretrain"]["train"],
        data=config["pretrain"]["data"],
    priority: 10
    threads: 1
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=2880,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/pretrain.py"
