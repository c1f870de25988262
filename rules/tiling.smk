# Tiling (SPEC 2.1): one tile store per dataset split, mmrotate img_split.py semantics.


rule tile:
    input:
        get_tile_inputs,
    output:
        store(f"{RESULTS}/tiles/{{dataset}}/{{split}}.zarr"),  # the store's zarr.json (see store() in common.smk)
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
