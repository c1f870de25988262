"""Checkpoints: atomic writes, RNG state capture, and the resume state of a training run.

A checkpoint is a ``torch.save``d dict. The rolling ``last.pth`` holds everything a rerun needs to continue
exactly where the run stopped:

    ``model``          state_dict of the bare model (no DDP ``module.`` prefix; the names fine-tuning loads)
    ``criterion``      state_dict of the criterion (empty for parameter-free criteria)
    ``optimizer``, ``scheduler``, ``grad_scaler`` (fp16 only), ``sampler``
    ``epoch``          epochs completed; ``iteration``: optimizer steps done over the whole run
    ``rng``            python, numpy, torch CPU and (when present) every CUDA device's generator state
    ``config``         the training config as a dict; ``meta``: free-form (torch version, world size, ...)

Epoch checkpoints (``epoch_12.pth`` ...) hold ``model``, ``criterion``, ``epoch``, ``iteration``, ``config``
and ``meta`` only (add the rest with ``full_state``): they are what evaluation and fine-tuning read, and
AdamW's two moments would triple their size.

Atomicity: the file is written to a temporary name in the same folder, flushed and fsynced, then renamed
over the target with ``os.replace`` (atomic on POSIX), and the folder is fsynced. A crash at any point
leaves either the old file or the new one, never a truncated one.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit this run."""


def atomic_save(obj, path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not possible on every file system (then skip)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint written by this module; a clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        # weights_only=False: the resume state holds numpy RNG tuples and config dicts, and the file is ours.
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(f"{path}: cannot read the checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a training checkpoint (no 'model' entry)")
    return state


def rng_state() -> dict:
    """Generator states of python ``random``, numpy's global RNG, torch CPU and all CUDA devices."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` captured (CUDA states only when this process has the same devices)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside a DDP / DataParallel wrapper."""
    return getattr(model, "module", model)
