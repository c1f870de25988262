"""Checkpoints: atomic writes, RNG state capture, and the resume state of a training run.

A checkpoint is a ``torch.save``d dict. The rolling ``last.pth`` holds everything a rerun needs to continue
exactly where the run stopped:

    ``model``          state_dict of the bare model (no DDP ``module.`` prefix; the names fine-tuning loads)
    ``criterion``      state_dict of the criterion (empty for parameter-free criteria)
    ``optimizer``, ``scheduler``, ``grad_scaler`` (fp16 only), ``sampler``
    ``epoch``          epochs completed; ``iteration``: optimizer steps done over the whole run
    ``rng``            one entry per rank: python, numpy, torch CPU and (when present) every CUDA device's
                       generator state, as tensors and plain types (see ``rng_state``)
    ``config``         the training config as a dict; ``meta``: free-form (torch version, world size, ...)

Everything is stored as tensors and plain Python types, so ``load_checkpoint`` reads it with
``torch.load(weights_only=True)``: a crafted file cannot run code. Files of older versions, whose RNG state
held numpy arrays, still load: the numpy globals that rebuild a plain array (and ``TorchVersion``) are
allow-listed.

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
import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.torch_version import TorchVersion


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


def _legacy_globals() -> list:
    """Globals that older checkpoints need beyond plain types: numpy's array rebuild (their numpy RNG state)
    and ``TorchVersion``. Rebuilding an array runs no code and its items still go through the restricted
    unpickler, so nothing else becomes loadable."""
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32)), TorchVersion]


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint written by this module with ``torch.load(weights_only=True)`` (no arbitrary
    unpickling); a one-line error naming the file for a missing, unreadable or refused file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_legacy_globals()):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        # torch's message spans many lines; keep the name of what the restricted unpickler refused
        refused = re.search(r"Unsupported global: GLOBAL (\S+)|but got <class '([^']+)'>", str(err))
        if refused:
            raise CheckpointError(
                f"{path}: refused to load: it asks to unpickle {refused.group(1) or refused.group(2)}, which a "
                f"training checkpoint never holds (a crafted or foreign file); delete it and retrain") from None
        first = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path}: cannot read the checkpoint ({type(err).__name__}: {first}); "
                              f"delete it and retrain to write it again") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a training checkpoint (no 'model' entry)")
    return state


def rng_state() -> dict:
    """Generator states of python ``random``, numpy's global RNG, torch CPU and all CUDA devices, as tensors
    and plain types (``weights_only`` loadable):

        ``python``  ``{"version": int, "state": [625 ints], "gauss_next": float | None}``
        ``numpy``   ``{"name": "MT19937", "keys": int64 tensor (624,), "pos", "has_gauss": int,
                    "cached_gaussian": float}``
        ``torch``   uint8 tensor; ``cuda`` (when initialised): list of uint8 tensors, one per device
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {"python": {"version": int(version), "state": [int(v) for v in internal], "gauss_next": gauss_next},
             "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` captured (CUDA states only when this process has the same devices). Also
    takes the tuples older checkpoints stored (``random.getstate()``, ``np.random.get_state()``)."""
    py = state["python"]
    if isinstance(py, dict):
        py = (py["version"], tuple(py["state"]), py["gauss_next"])
    random.setstate(py)
    npy = state["numpy"]
    if isinstance(npy, dict):
        keys = npy["keys"].numpy() if isinstance(npy["keys"], torch.Tensor) else np.asarray(npy["keys"])
        npy = (npy["name"], keys.astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    np.random.set_state(npy)
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
