"""Rule `pseudo_boxes`: masks -> le90 oriented boxes (largest first, at most max_boxes per tile)."""
from mutdet_core.logs import stage
from mutdet_core.pseudo_labels import masks_to_boxes

with stage("pseudo_boxes", snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    masks_to_boxes(snakemake.input.masks, snakemake.output[0], max_boxes=snakemake.params.max_boxes,  # noqa: F821
                   overwrite=True)
