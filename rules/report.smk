# Pictures for the Snakemake report (`snakemake --report report.html`): loss curves of every pre-training
# and fine-tuning run. The tables and the pseudo-label pictures are marked for the report where they are made.


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
