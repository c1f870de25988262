"""Training engine: optimizer, schedule, seeded sampler, checkpoints, DDP set-up and the training loop.

Typical use (a Snakemake rule script)::

    from mutdet_core.engine import TrainConfig, build_train_loader, init_distributed, train
    info, device = init_distributed("cuda")               # no-op for a single process
    cfg = TrainConfig.from_dict(config["train"])
    loader = build_train_loader(dataset, cfg.batch_size, collate_fn, seed=cfg.seed, num_workers=cfg.num_workers)
    result = train(model, criterion, loader, cfg, out_dir, device)
"""
from .checkpoint import CheckpointError, atomic_save, load_checkpoint
from .config import TrainConfig
from .distributed import DistInfo, get_rank, get_world_size, init_distributed, is_main_process
from .optim import build_optimizer
from .sampler import SeededSampler, build_train_loader, split_key
from .schedule import build_lr_scheduler, decay_epochs_for
from .trainer import LAST, LossModule, default_forward, epoch_checkpoint_name, train

__all__ = [
    "CheckpointError", "DistInfo", "LAST", "LossModule", "SeededSampler", "TrainConfig", "atomic_save",
    "build_lr_scheduler", "build_optimizer", "build_train_loader", "decay_epochs_for", "default_forward",
    "epoch_checkpoint_name", "get_rank", "get_world_size", "init_distributed", "is_main_process",
    "load_checkpoint", "split_key", "train",
]
