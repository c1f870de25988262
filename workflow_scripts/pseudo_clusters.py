"""Rule `pseudo_clusters`: PCA + spherical k-means fitted on the whole pre-training set."""
from mutdet_core.logs import stage
from mutdet_core.pseudo_labels import fit_clusters

with stage("pseudo_clusters", snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    fit_clusters(list(snakemake.input), snakemake.output[0], overwrite=True,  # noqa: F821
                 **snakemake.params.clustering)  # noqa: F821
