"""Rule `pseudo_assign`: every box gets its pseudo-class (nearest centroid) and 256-d embedding."""
from mutdet_core.logs import stage
from mutdet_core.pseudo_labels import assign_pseudo_labels

with stage("pseudo_assign", snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    assign_pseudo_labels(snakemake.input.embeddings, snakemake.input.clusters, snakemake.output[0],  # noqa: F821
                         overwrite=True)
