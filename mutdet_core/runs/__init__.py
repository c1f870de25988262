"""Run-level stages: one function per Snakemake rule, composing the data, model, engine and evaluation parts.

    pretrain_run(tile_stores, pseudo_label_stores, clusters_store, out_dir, method_cfg, detector_cfg,
                 train_cfg, data_cfg, device) -> final checkpoint              pretrain.py
    finetune_run(train_store, out_dir, detector_cfg, train_cfg, data_cfg, fraction, fraction_seed,
                 init_checkpoint, device) -> {epoch: checkpoint}             finetune.py
    predict_run(checkpoint, store, out_dir, detector_cfg, data_cfg, score_thr, ...) -> summary   inference.py
    evaluate_run(merged_dir, labels, class_names, convention, out_json, out_md, out_csv) -> result  evaluate.py

Training runs are resumable (the engine's ``last.pth``) and idempotent: a rerun that finds a finished run
of the same inputs and settings returns at once; a folder holding another run is an error (record.py).
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "evaluate_run": ".evaluate", "finetune_run": ".finetune", "predict_run": ".inference",
    "pretrain_run": ".pretrain", "PseudoLabelledTiles": ".pseudo_dataset",
    "build_pretraining_dataset": ".pseudo_dataset", "RunFolderError": ".record", "DataConfig": ".settings",
}

__all__ = ["DataConfig", "PseudoLabelledTiles", "RunFolderError", "build_pretraining_dataset", "evaluate_run",
           "finetune_run", "predict_run", "pretrain_run"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
