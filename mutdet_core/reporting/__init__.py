"""Pictures for people: training-loss curves of pre-training and fine-tuning runs (the Snakemake report)."""
from .curves import plot_run_losses, plot_training_curves

__all__ = ["plot_run_losses", "plot_training_curves"]
