"""Rule `tile`: one dataset split -> one tile store."""
from mutdet_core.logs import stage
from mutdet_core.tiling.stage import tile_dataset_split

w = snakemake.wildcards  # noqa: F821 - injected by Snakemake
root = snakemake.input[0] if snakemake.params.generated else None  # noqa: F821
with stage(f"tile {w.dataset}/{w.split}", snakemake.log[0]):  # noqa: F821
    # overwrite: Snakemake reruns this job because an input or a setting changed (it has removed the old
    # store's zarr.json and created the folder), so what is there is stale; it is replaced in one swap.
    tile_dataset_split(snakemake.params.entry, w.dataset, w.split, snakemake.output[0],  # noqa: F821
                       threads=snakemake.threads, root=root, overwrite=True)  # noqa: F821
