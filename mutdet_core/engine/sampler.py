"""Seeded, resumable, distributed data order.

The order of epoch ``e`` is a permutation that depends only on ``(seed, e)`` (numpy ``SeedSequence``), so a
run resumed from a checkpoint, or rerun from scratch, sees the same batches in the same order. Under DDP
the permutation is padded (by repeating its head) to a multiple of the world size and rank ``r`` takes
positions ``r, r + W, r + 2W, ...``, as ``torch.utils.data.DistributedSampler`` does.

Each element the sampler yields is a pair ``(index, sample_seed)``: ``sample_seed`` is derived from
``(seed, epoch, position in the permutation)``, and datasets draw their random augmentation from
``numpy.random.default_rng(sample_seed)``. Augmentation then depends neither on the number of DataLoader
workers nor on where a run was interrupted (the state of global RNGs inside worker processes is neither).
Datasets used with this sampler therefore accept such a pair as key (see ``split_key``).
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
from torch.utils.data import Sampler


def split_key(key) -> tuple[int, int | None]:
    """``(index, sample_seed)`` from a dataset key: a plain int (no seed) or a sampler pair."""
    if isinstance(key, tuple):
        index, seed = key
        return int(index), int(seed)
    return int(key), None


class SeededSampler(Sampler):
    """Yields ``(index, sample_seed)`` pairs for this process; see the module docstring.

    Args:
        num_samples: dataset length.
        seed: run seed.
        shuffle: permute each epoch (False: 0..n-1 in order, seeds still vary per epoch).
        num_replicas, rank: DDP world size and rank (defaults: the initialised process group, else 1 / 0).

    State: ``epoch`` (set by ``set_epoch``) and ``start`` (samples of this rank's share already consumed in
    that epoch, set by ``set_start`` when resuming mid-epoch). ``state_dict`` / ``load_state_dict`` hold
    both, plus the fixed parameters so a resume with a different world size or seed is caught.
    """

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True,
                 num_replicas: int | None = None, rank: int | None = None):
        from .distributed import get_rank, get_world_size

        if num_samples < 1:
            raise ValueError("the training set is empty: nothing to sample")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.num_replicas = int(num_replicas if num_replicas is not None else get_world_size())
        self.rank = int(rank if rank is not None else get_rank())
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside [0, {self.num_replicas})")
        self.epoch = 0
        self.start = 0

    @property
    def per_replica(self) -> int:
        """Samples this rank sees per epoch (the same on every rank)."""
        return math.ceil(self.num_samples / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s order and start it from its beginning."""
        self.epoch = int(epoch)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this rank's share (mid-epoch resume)."""
        if not 0 <= start <= self.per_replica:
            raise ValueError(f"start {start} outside [0, {self.per_replica}]")
        self.start = int(start)

    def _seeds(self) -> np.random.SeedSequence:
        return np.random.SeedSequence([self.seed, self.epoch])

    def order(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole epoch's ``(indices, sample_seeds)`` over all ranks, padded to a multiple of the world size."""
        seq = self._seeds()
        order_seq, sample_seq = seq.spawn(2)
        if self.shuffle:
            indices = np.random.default_rng(order_seq).permutation(self.num_samples)
        else:
            indices = np.arange(self.num_samples)
        total = self.per_replica * self.num_replicas
        if total > self.num_samples:  # pad by wrapping around, as DistributedSampler does
            indices = np.concatenate([indices, np.resize(indices, total - self.num_samples)])
        seeds = np.random.default_rng(sample_seq).integers(0, 2**63 - 1, size=total, dtype=np.int64)
        return indices, seeds

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices, seeds = self.order()
        mine = slice(self.rank, None, self.num_replicas)
        for index, seed in list(zip(indices[mine].tolist(), seeds[mine].tolist()))[self.start:]:
            yield index, seed

    def __len__(self) -> int:
        return self.per_replica - self.start

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "start": self.start, "seed": self.seed, "shuffle": self.shuffle,
                "num_samples": self.num_samples, "num_replicas": self.num_replicas}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "shuffle", "num_samples", "num_replicas"):
            if state.get(key) != getattr(self, key):
                raise ValueError(
                    f"sampler state from the checkpoint has {key}={state.get(key)!r} but this run has "
                    f"{getattr(self, key)!r}: the data order would differ; start a fresh run (new output folder)"
                )
        self.epoch = int(state["epoch"])
        self.set_start(int(state["start"]))


def build_train_loader(dataset, batch_size: int, collate_fn, seed: int = 0, num_workers: int = 2,
                       shuffle: bool = True, drop_last: bool = False, pin_memory: bool = False):
    """DataLoader with a ``SeededSampler`` for this process (call ``init_distributed`` first under DDP).

    ``batch_size`` is per process (the reference: 2 per GPU). ``drop_last=False`` as in mmcv, so the last
    batch of an epoch may be smaller. The loader gets its own torch generator so creating its iterator never
    consumes the global RNG (model dropout would otherwise depend on where a run was resumed).
    """
    import torch
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sampler = SeededSampler(len(dataset), seed=seed, shuffle=shuffle)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn, num_workers=num_workers,
        drop_last=drop_last, pin_memory=pin_memory, persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
