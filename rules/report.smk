# Pictures for the Snakemake report (`snakemake --report report.html`): loss curves of every pre-training
# and fine-tuning run, and AP per fine-tuning epoch of the grid (finetune.eval_points). The tables and the pseudo-label pictures are marked for the report where they are made.


rule training_curves:
    input:
        get_training_runs,
    output:
        report(
            directory(f"{RESULTS}/report/training_curves"),
            patterns=["{run}.png"],
            caption="../report/training_curves.rst",
            category="Training curves",
        ),
    log:
        f"{RESULTS}/logs/report/training_curves.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/training_curves.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/training_curves.py"


rule ap_curves:
    input:
        get_ap_curve_evaluations,
    output:
        png=report(
            f"{RESULTS}/report/ap_curves_{{dataset}}.png",
            caption="../report/ap_curves.rst",
            category="Training curves",
            labels={"figure": "AP per fine-tuning epoch: {dataset}"},
        ),
        csv=f"{RESULTS}/report/ap_curves_{{dataset}}.csv",
    log:
        f"{RESULTS}/logs/report/ap_curves_{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/ap_curves_{{dataset}}.tsv"
    params:
        cells=get_ap_curve_cells,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/ap_curves.py"
