"""Training engine: optimizer, schedule, seeded sampler, checkpoints, DDP set-up and the training loop.

Typical use (a Snakemake rule script)::

    from mutdet_core.engine import TrainConfig, build_train_loader, init_distributed, train
    info, device = init_distributed("cuda")               # no-op for a single process
    cfg = TrainConfig.from_dict(config["train"])
    loader = build_train_loader(dataset, cfg.batch_size, collate_fn, seed=cfg.seed, num_workers=cfg.num_workers)
    result = train(model, criterion, loader, cfg, out_dir, device)
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "CheckpointError": ".checkpoint", "atomic_save": ".checkpoint", "load_checkpoint": ".checkpoint",
    "TrainConfig": ".config", "DistInfo": ".distributed", "get_rank": ".distributed",
    "get_world_size": ".distributed", "init_distributed": ".distributed", "is_main_process": ".distributed",
    "build_optimizer": ".optim", "SeededSampler": ".sampler", "build_train_loader": ".sampler",
    "split_key": ".sampler", "build_lr_scheduler": ".schedule", "decay_epochs_for": ".defaults",
    "LAST": ".trainer",
    "LossModule": ".trainer", "default_forward": ".trainer", "epoch_checkpoint_name": ".trainer",
    "train": ".trainer",
}

__all__ = [
    "CheckpointError", "DistInfo", "LAST", "LossModule", "SeededSampler", "TrainConfig", "atomic_save",
    "build_lr_scheduler", "build_optimizer", "build_train_loader", "decay_epochs_for", "default_forward",
    "epoch_checkpoint_name", "get_rank", "get_world_size", "init_distributed", "is_main_process",
    "load_checkpoint", "split_key", "train",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
