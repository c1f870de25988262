"""Rule `training_curves`: one loss-curve picture per pre-training and fine-tuning run."""
from pathlib import Path

from mutdet_core.logs import stage
from mutdet_core.reporting import plot_training_curves

sm = snakemake  # noqa: F821 - injected by Snakemake
with stage("training_curves", sm.log[0]):
    # the output is <results>/report/training_curves
    plot_training_curves(list(sm.input), sm.output[0], results_dir=Path(sm.output[0]).parents[1])
