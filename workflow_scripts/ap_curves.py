"""Rule `ap_curves`: AP per fine-tuning epoch of one dataset's grid runs (picture + CSV)."""
from mutdet_core.logs import stage
from mutdet_core.reporting import write_ap_curves

sm = snakemake  # noqa: F821 - injected by Snakemake
with stage(f"ap_curves {sm.wildcards.dataset}", sm.log[0]):
    write_ap_curves(sm.params.cells, list(sm.input), sm.output.png, sm.output.csv,
                    title=f"{sm.wildcards.dataset}: AP50 per fine-tuning epoch")
