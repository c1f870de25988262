"""Pictures for people: training-loss curves of pre-training and fine-tuning runs and AP per fine-tuning
epoch (the Snakemake report)."""
from .ap_curves import ap_curve_frame, plot_ap_curves, write_ap_curves
from .curves import plot_run_losses, plot_training_curves

__all__ = ["ap_curve_frame", "plot_ap_curves", "plot_run_losses", "plot_training_curves", "write_ap_curves"]
