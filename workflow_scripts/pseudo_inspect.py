"""Rule `pseudo_inspect`: pictures, crop montages, statistics, recall and purity against ground truth."""
from mutdet_core.logs import stage
from mutdet_core.pseudo_labels import inspect_pseudo_labels

with stage("pseudo_inspect", snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    inspect_pseudo_labels(snakemake.input.pseudo_labels, snakemake.output[0],  # noqa: F821
                          **snakemake.params.inspect)  # noqa: F821
