"""Rule `tile`: one dataset split -> one tile store."""
from mutdet_core.logs import stage
from mutdet_core.tiling.stage import tile_dataset_split

w = snakemake.wildcards  # noqa: F821 - injected by Snakemake
with stage(f"tile {w.dataset}/{w.split}", snakemake.log[0]):  # noqa: F821
    tile_dataset_split(snakemake.params.entry, w.dataset, w.split, snakemake.output[0],  # noqa: F821
                       results_dir=snakemake.params.results_dir, threads=snakemake.threads)  # noqa: F821
