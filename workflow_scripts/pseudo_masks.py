"""Rule `pseudo_masks`: mask proposals (SAM or classical) for every tile."""
from mutdet_core.logs import stage
from mutdet_core.pseudo_labels import generate_masks

cfg = snakemake.params.masks  # noqa: F821 - injected by Snakemake
with stage("pseudo_masks", snakemake.log[0]):  # noqa: F821
    generate_masks(snakemake.input.tiles, snakemake.output[0], method=cfg["method"],  # noqa: F821
                   params=cfg.get(cfg["method"]) or None, device=cfg["device"], overwrite=True)
