"""Rule `generate_synthetic`: the embedded synthetic aerial dataset in DOTA format."""
from mutdet_core.logs import stage
from mutdet_core.synthetic.stage import generate_from_config

with stage("generate_synthetic", snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    generate_from_config(snakemake.params.synthetic, snakemake.output[0])  # noqa: F821
