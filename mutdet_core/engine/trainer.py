"""The training loop shared by pre-training and fine-tuning (mmcv's EpochBasedRunner, in one function).

Contract with the model and the criterion (see ``docs/DETECTOR_CONTRACT.md``):

    outputs = model(batch.images, batch.masks, batch.targets)   # images (B,3,H,W) float, masks (B,H,W) bool,
                                                                # True = padding; targets: list of B dicts
    losses = criterion(outputs, batch.targets)                  # dict name -> scalar tensor
    total = sum(criterion.weight_dict[k] * losses[k] for k in losses if k in criterion.weight_dict)

``batch`` is what the loader yields (``mutdet_core.data.Batch``); it is moved to the device with its
``to(device)`` method (tensors, lists, tuples and dicts are moved recursively). A method whose step is not
this (two augmented views, an EMA target, ...) passes ``forward_fn(model, criterion, batch) -> losses`` and,
if it updates something after each optimizer step, ``after_step(model, criterion, iteration)``.

Model and criterion are wrapped together in one module, so that DDP also synchronises the gradients of
parameters that live in the criterion (projection heads of pre-training methods). The optimizer covers
both; parameter names are prefixed ``model.`` / ``criterion.`` there, which the lr multiplier keys
(substrings) do not mind. Checkpoints store the bare model and criterion separately.

Run folder ``out_dir``: ``last.pth`` (rolling, full resume state), ``epoch_<E>.pth``, ``losses.csv``,
``tensorboard/``, ``train_config.json``. A rerun with ``resume`` continues from ``last.pth``; a finished
run returns at once.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import distributed
from .checkpoint import (CheckpointError, atomic_save, load_checkpoint, rng_state, seed_everything,
                         set_rng_state)
from .config import TRAJECTORY_KEYS, TrainConfig
from .monitor import TrainingMonitor
from .optim import build_optimizer, group_summary
from .sampler import SeededSampler
from .schedule import build_lr_scheduler

LAST = "last.pth"


def epoch_checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch}.pth"


def move_to_device(obj, device: torch.device):
    """``obj`` with every tensor on ``device``: tensors, objects with ``to(device)``, lists, tuples, dicts."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move_to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        moved = [move_to_device(v, device) for v in obj]
        return type(obj)(*moved) if hasattr(obj, "_fields") else type(obj)(moved)
    if callable(getattr(obj, "to", None)) and not isinstance(obj, type):  # e.g. data.Batch
        return obj.to(device)
    return obj


def default_forward(model: nn.Module, criterion: nn.Module, batch) -> dict[str, torch.Tensor]:
    """The supervised step: ``criterion(model(images, masks, targets), targets)``."""
    outputs = model(batch.images, batch.masks, batch.targets)
    return criterion(outputs, batch.targets)


class LossModule(nn.Module):
    """Model + criterion as one module whose forward returns the loss dict (what DDP wraps)."""

    def __init__(self, model: nn.Module, criterion: nn.Module, forward_fn: Callable = default_forward):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.forward_fn = forward_fn

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.forward_fn(self.model, self.criterion, batch)


def weighted_total(losses: dict[str, torch.Tensor], weight_dict: dict[str, float]) -> torch.Tensor:
    """``sum(weight_dict[k] * losses[k])`` over the keys in ``weight_dict``; an error if none is."""
    used = [k for k in losses if k in weight_dict]
    if not used:
        raise KeyError(f"the criterion returned {sorted(losses)} but its weight_dict names none of them "
                       f"(weight_dict keys: {sorted(weight_dict)})")
    return sum(weight_dict[k] * losses[k] for k in used)


def _autocast(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _check_resume_config(saved: dict, cfg: TrainConfig, path: Path) -> None:
    current = cfg.to_dict()
    changed = [f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in TRAJECTORY_KEYS
               if k in saved and _normalise(saved[k]) != _normalise(current[k])]
    if changed:
        raise CheckpointError(
            f"{path} was written with another training config ({'; '.join(changed)}); resuming would mix two "
            f"runs. Restore the config, or delete the run folder {path.parent} to start afresh."
        )


def _normalise(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def train(model: nn.Module, criterion: nn.Module, train_loader, cfg: TrainConfig | dict, out_dir,
          device: str | torch.device = "cpu", log: logging.Logger | None = None,
          forward_fn: Callable | None = None, after_step: Callable | None = None,
          meta: dict | None = None) -> dict:
    """Train ``model`` with ``criterion`` on ``train_loader`` for ``cfg.epochs`` epochs; resumable.

    Args:
        model: the detector (on any device; moved to ``device``). Its frozen parameters stay out of the optimizer.
        criterion: module with ``forward(outputs, targets) -> dict`` and ``weight_dict``.
        train_loader: a DataLoader whose ``sampler`` is a ``SeededSampler`` (``build_train_loader`` makes one);
            under DDP, built after ``init_distributed`` so the sampler knows the rank.
        cfg: ``TrainConfig`` or a dict of its fields.
        out_dir: the run folder.
        device: "cpu", "cuda" (becomes ``cuda:<local_rank>`` under DDP) or a torch.device.
        log: logger (default ``mutdet.engine``).
        forward_fn, after_step: optional hooks, see the module docstring.
        meta: extra JSON-able facts stored in every checkpoint (dataset, pre-training source, ...).

    Returns:
        ``{"epoch", "iteration", "last", "checkpoints": {epoch: path}, "resumed_from": iteration or None}``.
    """
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
    cfg.validate()
    log = log or logging.getLogger("mutdet.engine")
    info, device = distributed.init_distributed(device)
    out_dir = Path(out_dir)
    sampler = getattr(train_loader, "sampler", None)
    if not isinstance(sampler, SeededSampler):
        raise TypeError("train_loader must use mutdet_core.engine.SeededSampler (build it with build_train_loader): "
                        "the data order has to be seeded and resumable")
    if sampler.num_replicas != info.world_size or sampler.rank != info.rank:
        raise ValueError(f"the loader's sampler was built for rank {sampler.rank}/{sampler.num_replicas}, this process "
                         f"is {info.rank}/{info.world_size}: call init_distributed() before build_train_loader()")
    if not hasattr(criterion, "weight_dict"):
        raise TypeError(f"{type(criterion).__name__} has no weight_dict: the engine needs it to weight the losses")
    batch_size = train_loader.batch_size or cfg.batch_size
    iters_per_epoch = (sampler.per_replica // batch_size if train_loader.drop_last
                       else math.ceil(sampler.per_replica / batch_size))
    if iters_per_epoch < 1:
        raise ValueError(f"{sampler.per_replica} samples per process and batch size {batch_size} with drop_last: "
                         "no full batch per epoch")

    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob(f".{LAST}.*.tmp"):  # left by a job killed while saving
            stale.unlink(missing_ok=True)
    distributed.barrier()

    module = LossModule(model, criterion, forward_fn or default_forward).to(device)
    optimizer = build_optimizer(module, cfg.lr, cfg.weight_decay, cfg.betas, cfg.lr_mult, cfg.lr_mult_keys)
    scheduler = build_lr_scheduler(optimizer, iters_per_epoch, cfg.epochs, cfg.resolved_decay_epochs,
                                   cfg.decay_gamma, cfg.warmup_iters, cfg.warmup_ratio)
    use_amp = device.type == "cuda" and cfg.amp != "none"
    scaler = torch.amp.GradScaler("cuda") if use_amp and cfg.amp == "fp16" else None
    if cfg.amp != "none" and device.type != "cuda":
        log.info("amp=%s ignored: autocast is used on CUDA only, this run is on %s", cfg.amp, device)

    epoch, iteration, resumed_from = 0, 0, None
    last_path = out_dir / LAST
    state = None
    if cfg.resume and last_path.is_file():
        # On CPU first: the RNG states must stay CPU tensors; load_state_dict copies weights and optimizer
        # moments onto the parameters' device.
        state = load_checkpoint(last_path, map_location="cpu")
        _check_resume_config(state.get("config", {}), cfg, last_path)
        # Snakemake deletes a job's outputs before rerunning it (e.g. after a code change): an epoch
        # checkpoint older than last.pth cannot be recovered from it, so such a run starts again.
        lost = [e for e in cfg.save_epochs
                if e < int(state["epoch"]) and not (out_dir / epoch_checkpoint_name(e)).is_file()]
        if lost:
            log.warning("%s is at epoch %d but %s are gone: training again from the start", last_path,
                        int(state["epoch"]), ", ".join(epoch_checkpoint_name(e) for e in lost))
            state = None
    if state is not None:
        model.load_state_dict(state["model"])
        criterion.load_state_dict(state.get("criterion", {}))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        sampler.load_state_dict(state["sampler"])
        rngs = state["rng"]
        set_rng_state(rngs[info.rank] if len(rngs) == info.world_size else rngs[0])
        epoch, iteration, resumed_from = int(state["epoch"]), int(state["iteration"]), int(state["iteration"])
        log.info("resumed from %s: %d epochs and %d iterations done", last_path, epoch, iteration)
    else:
        seed_everything(cfg.seed + info.rank)
    done = {e: out_dir / epoch_checkpoint_name(e) for e in cfg.save_epochs if e <= epoch}
    if epoch in done and not done[epoch].is_file() and info.is_main:
        # the checkpoint of the epoch last.pth holds was deleted: it is last.pth's model, rewrite it
        keep = ("model", "criterion", "epoch", "iteration", "config", "meta")
        atomic_save(state if cfg.full_state_in_epoch_checkpoints else {k: state[k] for k in keep if k in state},
                    done[epoch])
        log.info("rewrote %s from %s", done[epoch], last_path)
    if epoch >= cfg.epochs:
        log.info("%s: training already finished (%d epochs), nothing to do", out_dir, epoch)
        return _result(epoch, iteration, last_path, done, resumed_from)

    if info.is_main:
        (out_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        log.info("training %d epochs x %d iterations on %s (world size %d, batch %d per process); %s",
                 cfg.epochs, iters_per_epoch, device, info.world_size, batch_size, group_summary(optimizer))
    wrapped = module
    if info.distributed:
        wrapped = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.find_unused_parameters)
    monitor = TrainingMonitor(out_dir, cfg.epochs, iters_per_epoch, log, cfg.log_interval, cfg.tensorboard,
                              cfg.progress_bar, resumed_from)
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def save(path: Path, full: bool) -> None:
        rngs = distributed.all_gather_object(rng_state())  # collective: every rank reaches here
        if not info.is_main:
            return
        state = {"model": model.state_dict(), "criterion": criterion.state_dict(), "epoch": epoch,
                 "iteration": iteration, "config": cfg.to_dict(),
                 "meta": {"torch": str(torch.__version__), "world_size": info.world_size, **(meta or {})}}
        if full:
            state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                         grad_scaler=scaler.state_dict() if scaler is not None else None,
                         sampler=sampler.state_dict(), rng=rngs)
        atomic_save(state, path)

    try:
        module.train()
        while epoch < cfg.epochs:
            if sampler.epoch != epoch or sampler.start == 0:
                sampler.set_epoch(epoch)  # a mid-epoch resume keeps the checkpoint's start instead
            epoch_iter = sampler.start // batch_size
            if train_loader.generator is not None:  # worker seeds: a function of (seed, epoch) only
                train_loader.generator.manual_seed(cfg.seed * 100003 + epoch)
            for batch in train_loader:
                batch = move_to_device(batch, device)
                with _autocast(device, cfg.amp if use_amp else "none"):
                    losses = wrapped(batch)
                    total = weighted_total(losses, criterion.weight_dict)
                if not torch.isfinite(total):
                    raise FloatingPointError(
                        f"non-finite loss at epoch {epoch + 1}, iteration {iteration + 1}: "
                        + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items()))
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(total).backward()
                    scaler.unscale_(optimizer)
                else:
                    total.backward()
                grad_norm = None
                if cfg.clip_max_norm:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.clip_max_norm, norm_type=2.0))
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                lrs = {group.get("name", str(i)): group["lr"] for i, group in enumerate(optimizer.param_groups)}
                scheduler.step()
                iteration += 1
                epoch_iter += 1
                if after_step is not None:
                    after_step(model, criterion, iteration)
                monitor.update({k: float(v.detach()) for k, v in losses.items()}, float(total.detach()), grad_norm)
                if epoch_iter % cfg.log_interval == 0 or epoch_iter == iters_per_epoch:
                    monitor.report(epoch + 1, epoch_iter, iteration, lrs)
                if cfg.checkpoint_every_iters and iteration % cfg.checkpoint_every_iters == 0 \
                        and epoch_iter < iters_per_epoch:
                    sampler.start = epoch_iter * batch_size  # what a resume must skip in this epoch
                    save(last_path, full=True)
            epoch += 1
            sampler.start = 0
            sampler.epoch = epoch
            save(last_path, full=True)
            if epoch in cfg.save_epochs:
                done[epoch] = out_dir / epoch_checkpoint_name(epoch)
                save(done[epoch], full=cfg.full_state_in_epoch_checkpoints)
                if info.is_main:
                    log.info("epoch %d/%d done: wrote %s", epoch, cfg.epochs, done[epoch])
    finally:
        monitor.close()
    distributed.barrier()
    return _result(epoch, iteration, last_path, done, resumed_from)


def _result(epoch, iteration, last_path, checkpoints, resumed_from) -> dict:
    return {"epoch": epoch, "iteration": iteration, "last": last_path, "checkpoints": checkpoints,
            "resumed_from": resumed_from}
