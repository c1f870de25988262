"""Rule `pseudo_embeddings`: rotated crops -> frozen ResNet features, row-aligned with the boxes."""
from mutdet_core.logs import stage
from mutdet_core.pseudo_labels import extract_embeddings

with stage("pseudo_embeddings", snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    extract_embeddings(snakemake.input.tiles, snakemake.input.boxes, snakemake.output[0],  # noqa: F821
                       params=snakemake.params.embeddings or None, device=snakemake.params.device,  # noqa: F821
                       overwrite=True)
