"""Rules `table1` ... `table9`: our evaluations in the paper's layout, beside the published numbers."""
from mutdet_core.logs import stage
from mutdet_core.tables.results import write_paper_table

sm = snakemake  # noqa: F821 - injected by Snakemake
with stage(f"table{sm.params.number}", sm.log[0]):
    write_paper_table(sm.params.number, sm.params.cells, list(sm.input), sm.output.md, sm.output.csv)
