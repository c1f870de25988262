"""Rule `evaluate`: merged detections against the test split's labels (DOTA devkit AP50, AP75, AP50:95)."""
from pathlib import Path

from mutdet_core.logs import stage
from mutdet_core.runs.evaluate import evaluate_split_run

sm = snakemake  # noqa: F821 - injected by Snakemake
root = sm.input.labels[0] if sm.params.generated else None
with stage(f"evaluate {sm.input.predictions}", sm.log[0]):
    evaluate_split_run(Path(sm.input.predictions) / "merged", sm.params.entry, sm.wildcards.dataset, sm.params.split,
                       root, sm.params.convention, sm.output.json, sm.output.md, sm.output.csv)
