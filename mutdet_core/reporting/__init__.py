"""Pictures for people: training-loss curves of pre-training and fine-tuning runs and AP per fine-tuning
epoch (the Snakemake report)."""
from .._lazy import lazy_exports

_EXPORTS = {
    "ap_curve_frame": ".ap_curves", "plot_ap_curves": ".ap_curves", "write_ap_curves": ".ap_curves",
    "plot_run_losses": ".curves", "plot_training_curves": ".curves",
}

__all__ = ["ap_curve_frame", "plot_ap_curves", "plot_run_losses", "plot_training_curves", "write_ap_curves"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
