"""Rule `table5_small`: the fine-tuning evaluations of one dataset as a Table 5 look-alike (Markdown + CSV)
and the per-seed results (one row per run)."""
from mutdet_core.logs import stage
from mutdet_core.tables import per_seed_results, render_small_scale_table5, small_scale_results

sm = snakemake  # noqa: F821 - injected by Snakemake
with stage(f"table5_small {sm.wildcards.dataset}", sm.log[0]):
    results = small_scale_results((*key, path) for key, path in zip(sm.params.cells, sm.input))
    render_small_scale_table5(results, sm.output.md, sm.output.csv,
                              title=f"{sm.wildcards.dataset}: fine-tuning with k % of the training images",
                              note=sm.params.note)
    per_seed_results(results).to_csv(sm.output.seeds, index=False, float_format="%.2f", lineterminator="\n")
