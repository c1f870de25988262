# The embedded synthetic aerial dataset (DOTA format), generated from a seed.


rule generate_synthetic:
    output:
        directory(f"{RESULTS}/data/{{dataset}}"),
    log:
        f"{RESULTS}/logs/generate_synthetic/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate_synthetic/{{dataset}}.tsv"
    params:
        synthetic=config["synthetic"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/generate_synthetic.py"
