"""torch.distributed set-up for one process per device, launched by torchrun or by SLURM's srun.

Launchers and the environment they leave:

* ``torchrun --nproc_per_node=N`` (single node, or several with ``--nnodes``): ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``.
* ``srun`` (one task per GPU, any number of nodes): ``SLURM_PROCID`` (rank), ``SLURM_NTASKS`` (world size),
  ``SLURM_LOCALID`` (local rank), ``SLURM_JOB_NODELIST`` (the first host becomes ``MASTER_ADDR`` unless
  it is already set), ``SLURM_JOB_ID`` (picks ``MASTER_PORT`` in 20000-29999 unless it is already set, so
  two jobs sharing a node do not collide).
* Neither (or ``SLURM_NTASKS=1``, e.g. one Snakemake job per sbatch): a single process, no process group.

Backend: ``nccl`` when training on CUDA, ``gloo`` on CPU. Every helper here also works without an
initialised process group (world size 1), so training code calls them unconditionally.
"""
from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` in [0, world_size), ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def first_slurm_host(nodelist: str) -> str:
    """First host name of a SLURM node list (the compressed form of ``SLURM_JOB_NODELIST``).

    ``"gpu[003-005,9],cpu1"`` -> ``"gpu003"``; ``"node-a,node-b"`` -> ``"node-a"``;
    ``"rack1-[07-08]-x"`` -> ``"rack1-07-x"``. Zero padding of ranges is kept, as SLURM does.
    """
    nodelist = nodelist.strip()
    if not nodelist:
        raise ValueError("SLURM_JOB_NODELIST is empty: cannot choose MASTER_ADDR")
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):  # the first top-level comma ends the first entry
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            end = i
            break
    entry = nodelist[:end]
    match = re.fullmatch(r"([^\[]*)\[([^\]]+)\](.*)", entry)
    if match is None:
        if "[" in entry or "]" in entry:
            raise ValueError(f"SLURM_JOB_NODELIST={nodelist!r}: cannot parse the host entry {entry!r}")
        return entry
    prefix, ranges, suffix = match.groups()
    first = ranges.split(",")[0].split("-")[0]
    if "[" in suffix:  # several bracket groups, e.g. a[1-2]b[3-4]: expand the remaining ones too
        return prefix + first + first_slurm_host(suffix)
    return prefix + first + suffix


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def detect_launch() -> DistInfo:
    """Rank, world size and local rank from the launcher's environment (see the module docstring).
    Sets ``MASTER_ADDR`` / ``MASTER_PORT`` for a SLURM launch when they are missing."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:  # torchrun, or a test that sets them
        world = _env_int("WORLD_SIZE")
        rank = _env_int("RANK")
        local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    elif int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in os.environ:
        world = _env_int("SLURM_NTASKS")
        rank = _env_int("SLURM_PROCID")
        local = _env_int("SLURM_LOCALID") if "SLURM_LOCALID" in os.environ else 0
        if "MASTER_ADDR" not in os.environ:
            if "SLURM_JOB_NODELIST" not in os.environ:
                raise RuntimeError("SLURM launch with several tasks but neither MASTER_ADDR nor "
                                   "SLURM_JOB_NODELIST is set")
            os.environ["MASTER_ADDR"] = first_slurm_host(os.environ["SLURM_JOB_NODELIST"])
        if "MASTER_PORT" not in os.environ:
            os.environ["MASTER_PORT"] = str(20000 + int(os.environ.get("SLURM_JOB_ID", "0") or 0) % 10000)
        # Also export the torchrun names, so code that only knows those (and child processes) agrees.
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
    else:
        return DistInfo()
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside world size {world} "
                         "(check RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS)")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init_distributed(device: str | torch.device = "cpu",
                     timeout_minutes: float = 30.0) -> tuple[DistInfo, torch.device]:
    """Initialise the default process group if the environment describes several processes.

    Idempotent: a second call (or a call after the caller initialised torch.distributed itself) only
    reports. Returns ``(info, device)`` where ``device`` is ``cuda:<local_rank>`` for a distributed CUDA
    run (that device is also made current) and the given device otherwise.
    """
    device = torch.device(device)
    if dist.is_available() and dist.is_initialized():
        info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    else:
        info = detect_launch()
        if info.distributed:
            if not dist.is_available():
                raise RuntimeError("this torch build has no torch.distributed, but the launcher asked for "
                                   "several processes")
            for name in ("MASTER_ADDR", "MASTER_PORT"):
                if name not in os.environ:
                    raise RuntimeError(f"distributed launch (world size {info.world_size}) without {name} "
                                       "in the environment")
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(info.local_rank)
            dist.init_process_group(backend=backend, init_method="env://", rank=info.rank,
                                    world_size=info.world_size, timeout=datetime.timedelta(minutes=timeout_minutes))
    if device.type == "cuda" and info.distributed:
        device = torch.device("cuda", info.local_rank)
    return info, device


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_initialized() and get_world_size() > 1:
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over all processes (a new tensor; the input is left alone)."""
    out = tensor.detach().clone()
    if is_initialized() and get_world_size() > 1:
        dist.all_reduce(out)
        out /= get_world_size()
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all processes (a new tensor). Criteria use it for the number of boxes."""
    out = tensor.detach().clone()
    if is_initialized() and get_world_size() > 1:
        dist.all_reduce(out)
    return out


def reduce_dict(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean of each scalar over all processes (one all-reduce for the whole dict). Every process must
    pass the same keys; the trainer's logging uses ``all_gather_object`` instead, which tolerates
    losses present on some processes only (e.g. denoising losses of a batch without objects)."""
    if not values or get_world_size() == 1:
        return {k: v.detach() for k, v in values.items()}
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    stacked = all_reduce_mean(stacked)
    return dict(zip(keys, stacked))


def all_gather_object(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (a one-element list without a process group). Pickles:
    meant for small things such as the per-interval loss averages, not for tensors in the hot loop."""
    if not is_initialized() or get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def destroy_distributed() -> None:
    if is_initialized():
        dist.destroy_process_group()
