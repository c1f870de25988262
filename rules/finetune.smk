# Fine-tuning (SPEC 2.8 and 5) on a fraction of a labelled split, from scratch (init 'none') or from a
# pre-training run; then detection on the test split, merging to full images, and DOTA-devkit evaluation.
# One folder per run, <dataset>/<model>/<init>/frac<fraction>/e<epochs>/seed<seed>, under finetune/,
# predict/ and evaluate/ (mutdet_core/runs/plan.py). The last checkpoint is the declared output; the
# earlier ones the tables read (e.g. epochs 12 and 24 of a 36-epoch run) are written by the same run.
# threads: 1 suits a laptop (a small model on CPU gains little from a second thread, and two jobs then run
# side by side); profiles/slurm sets the cluster's counts.

FT_RUN = "{dataset}/{model}/{init}/frac{fraction}/e{epochs}/seed{seed}"


rule finetune:
    input:
        train=get_finetune_train_store,
        init=get_init_checkpoint,
    output:
        f"{RESULTS}/finetune/{FT_RUN}/epoch_{{epochs}}.pth",
    log:
        f"{RESULTS}/logs/finetune/{FT_RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/{FT_RUN}.tsv"
    params:
        detector=get_finetune_detector,
        train=get_finetune_train_config,
        data=config["finetune"]["data"],
        fraction_seed=config["finetune"]["fraction_seed"],
    threads: 1
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=2880,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/finetune.py"


rule predict:
    input:
        last_checkpoint=f"{RESULTS}/finetune/{FT_RUN}/epoch_{{epochs}}.pth",
        tiles=get_finetune_test_store,
    output:
        directory(f"{RESULTS}/predict/{FT_RUN}/epoch_{{epoch}}"),
    log:
        f"{RESULTS}/logs/predict/{FT_RUN}/epoch_{{epoch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict/{FT_RUN}/epoch_{{epoch}}.tsv"
    params:
        epoch="{epoch}",
        data=config["finetune"]["data"],
        score_thr=config["finetune"]["score_thr"],
    threads: 1
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/predict.py"


rule evaluate:
    input:
        predictions=f"{RESULTS}/predict/{FT_RUN}/epoch_{{epoch}}",
        labels=get_test_labels,
    output:
        json=f"{RESULTS}/evaluate/{FT_RUN}/epoch_{{epoch}}.json",
        md=f"{RESULTS}/evaluate/{FT_RUN}/epoch_{{epoch}}.md",
        csv=f"{RESULTS}/evaluate/{FT_RUN}/epoch_{{epoch}}.csv",
    log:
        f"{RESULTS}/logs/evaluate/{FT_RUN}/epoch_{{epoch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{FT_RUN}/epoch_{{epoch}}.tsv"
    params:
        entry=get_dataset_entry,
        split=get_test_split,
        convention=get_test_convention,
        generated=is_generated_dataset,
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/evaluate.py"
