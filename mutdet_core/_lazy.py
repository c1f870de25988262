"""Lazy package exports (PEP 562): ``from mutdet_core.engine import train`` imports ``engine.trainer`` (and
torch) only when ``train`` is first asked for, so the light parts of a package (``engine.config``,
``runs.plan``, ...) import without torch, torchvision, sklearn or shapely.

A package ``__init__`` declares where each exported name lives and installs the hooks::

    from .._lazy import lazy_exports

    _EXPORTS = {"TrainConfig": ".config", "train": ".trainer", ...}
    __all__ = [...]
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

``from pkg import *`` still binds every name of ``__all__``; an exported name found once is cached in the
package namespace, so later look-ups are plain attribute reads.
"""
from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str], namespace: dict):
    """``(__getattr__, __dir__)`` of ``package`` that import ``exports[name]`` (a relative module) on demand."""
    for name, module in exports.items():
        # a name equal to its own submodule would be overwritten by the module when the submodule loads
        if module.lstrip(".") == name:
            raise ValueError(f"{package}: lazy export {name!r} has the name of its submodule")

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
