# Tiling (SPEC 2.1): one tile store per dataset split, mmrotate img_split.py semantics.


rule tile:
    input:
        get_tile_inputs,
    output:
        directory(f"{RESULTS}/tiles/{{dataset}}/{{split}}.zarr"),
    log:
        f"{RESULTS}/logs/tile/{{dataset}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tile/{{dataset}}/{{split}}.tsv"
    params:
        entry=get_dataset_entry,
        generated=is_generated_dataset,
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/tile.py"
