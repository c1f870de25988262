"""Start one training process per GPU from inside a single job (a Snakemake rule on one SLURM node).

The SLURM executor runs each Snakemake job as one task (``srun -n1``) holding all the GPUs the rule asked
for (``resources: gpu``). ``launch(fn, nprocs, ...)`` turns that task into a single-node DDP run the way
``torchrun --nproc_per_node`` would: it spawns ``nprocs`` processes with ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` (127.0.0.1) and a free ``MASTER_PORT`` set, and each calls ``fn``
(``init_distributed`` reads those variables). Rank 0's return value is returned; a failing rank fails
the launch with its traceback. Under an existing multi-process launch (torchrun, or srun with several
tasks) and for ``nprocs <= 1`` it simply calls ``fn`` in this process.

``threads`` (the job's CPU count, Snakemake's ``threads``) is shared out: each process runs PyTorch with
``max(1, threads // nprocs)`` intra-op threads, so two jobs side by side on a small machine, or four ranks
in one job, do not each start one thread per core of the node and oversubscribe it.
"""
from __future__ import annotations

import logging
import os
import socket

import torch
import torch.multiprocessing as mp

from ..logs import configure_logging
from .distributed import destroy_distributed, detect_launch


def free_port() -> int:
    """A TCP port free on this host now (for MASTER_PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(local_rank: int, nprocs: int, port: int, log_file, threads, fn, args, kwargs, results) -> None:
    _share_threads(threads, nprocs)
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nprocs),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # spawned processes start without logging set up: rank 0 continues the job's log, the others warn only
    configure_logging(log_file if local_rank == 0 else None, logging.INFO if local_rank == 0 else logging.WARNING,
                      append=True)
    try:
        value = fn(*args, **kwargs)
    finally:
        destroy_distributed()
    if local_rank == 0:
        results.put(value)


def _share_threads(threads: int | None, nprocs: int) -> None:
    if threads:
        torch.set_num_threads(max(1, int(threads) // max(1, nprocs)))


def launch(fn, nprocs: int, *args, log_file=None, threads: int | None = None, **kwargs):
    """``fn(*args, **kwargs)`` in ``nprocs`` DDP processes on this node (module docstring); returns rank 0's
    result. ``fn`` must be importable (a module-level function), as must its arguments. ``log_file``: the
    job's log, which rank 0 appends to; ``threads``: the job's CPUs, shared among the processes (None:
    PyTorch's default, one per core)."""
    nprocs = int(nprocs or 1)
    if nprocs <= 1 or detect_launch().distributed:
        _share_threads(threads, 1)
        return fn(*args, **kwargs)
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(_worker, args=(nprocs, free_port(), log_file, threads, fn, args, kwargs, results), nprocs=nprocs,
                       join=True, start_method="spawn")
    return results.get()
