"""Rule `pseudo_boxes`: masks -> le90 oriented boxes (largest first, at most max_boxes per tile); for a dataset
with pseudo_boxes: ground_truth (the oracle diagnostic), the tile store's labelled boxes instead."""
from mutdet_core.logs import stage
from mutdet_core.pseudo_labels import ground_truth_boxes, masks_to_boxes

sm = snakemake  # noqa: F821 - injected by Snakemake
with stage("pseudo_boxes", sm.log[0]):
    if "tiles" in sm.input.keys():
        ground_truth_boxes(sm.input.tiles, sm.output[0], max_boxes=sm.params.max_boxes, overwrite=True)
    else:
        masks_to_boxes(sm.input.masks, sm.output[0], max_boxes=sm.params.max_boxes, overwrite=True)
