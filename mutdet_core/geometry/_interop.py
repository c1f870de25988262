"""numpy <-> torch interop for the geometry package.

Every geometry function is written once, in torch, and accepts numpy arrays too: a numpy input is wrapped
with ``torch.from_numpy`` (no copy for float64), computed on CPU and handed back as numpy in the caller's
dtype. Writing the maths once is what keeps the numpy and torch results identical.
"""
from __future__ import annotations

import numpy as np
import torch

VERSIONS = ("le90", "le135", "oc")


def check_version(version: str, name: str = "version") -> str:
    if version not in VERSIONS:
        raise ValueError(f"{name}={version!r}: angle version must be one of {VERSIONS}")
    return version


def is_torch(*xs) -> bool:
    return any(isinstance(x, torch.Tensor) for x in xs)


def result_dtype(*xs):
    """Floating dtype of the output: the inputs' (promoted) float dtype; integers and bools give float64."""
    if is_torch(*xs):
        dt = None
        for x in xs:
            if isinstance(x, torch.Tensor):
                dt = x.dtype if dt is None else torch.promote_types(dt, x.dtype)
        return dt if dt.is_floating_point else torch.float64
    dt = np.result_type(*[np.asarray(x).dtype for x in xs])
    return dt if np.issubdtype(dt, np.floating) else np.dtype(np.float64)


def to_tensor(x, *, dtype=torch.float64, device=None, name: str = "input") -> torch.Tensor:
    """``x`` (numpy, list or tensor) as a tensor of ``dtype`` on ``device`` (the tensor's own by default)."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device if device is not None else x.device, dtype=dtype)
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot convert to an array ({err})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device=device, dtype=dtype)


def compute_dtype(x) -> torch.dtype:
    """dtype to do the arithmetic in: float64 for numpy, the tensor's dtype for float32/64 tensors,
    float32 for half precision (trig on half is unsupported on CPU and too coarse anyway)."""
    if isinstance(x, torch.Tensor):
        if x.dtype in (torch.float32, torch.float64):
            return x.dtype
        if x.dtype in (torch.float16, torch.bfloat16):
            return torch.float32
    return torch.float64


def restore(t: torch.Tensor, like_torch: bool, dtype):
    """Return ``t`` as the caller's kind (numpy or torch) and output ``dtype``."""
    if like_torch:
        return t.to(dtype)
    return t.detach().cpu().numpy().astype(dtype, copy=False)


def check_last_dim(x, size: int, name: str, fn: str):
    shape = tuple(x.shape)
    if len(shape) == 0 or shape[-1] != size:
        raise ValueError(f"{fn}: {name} must have shape (..., {size}), got {shape}")


def check_finite(t: torch.Tensor, name: str, fn: str):
    """Raise naming the first offending rows when ``t`` has NaN or inf."""
    finite = torch.isfinite(t)
    if bool(finite.all()):
        return
    rows = finite.reshape(t.shape[0], -1).all(-1) if t.dim() else finite.reshape(1)
    bad = torch.nonzero(~rows)[:5, 0].tolist()
    raise ValueError(f"{fn}: {name} contains NaN or inf (first bad rows: {bad})")
