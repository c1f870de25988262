"""Replace a finished output folder without ever losing both copies (tile stores, stage stores, predictions).

A writer builds its output in ``<path>.tmp``; ``swap_in`` then moves the old folder aside to ``<path>.old``,
renames the new one in, and only then deletes the aside copy. At every instant one whole copy exists at a
known name, so a job killed between two steps loses nothing. ``recover_swap`` (called by every opener and
every writer before it starts) finishes a swap that was interrupted: when ``<path>`` is missing, a complete
``<path>.tmp`` wins, else ``<path>.old`` is restored; a leftover ``<path>.old`` beside a present ``<path>``
is the old copy whose deletion was cut short, and is removed.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)


def temporary_path(path) -> Path:
    """Where the new copy is built: ``<path>.tmp``."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def aside_path(path) -> Path:
    """Where the old copy waits during a swap: ``<path>.old``."""
    path = Path(path)
    return path.with_name(path.name + ".old")


def _fsync_dir(folder: Path) -> None:
    # Renames are durable only once the parent folder is synced (a power cut could otherwise undo them).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _move_aside(path: Path, old: Path) -> None:
    os.replace(path, old)


def _move_in(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)


def swap_in(tmp, path) -> Path:
    """Move the finished folder ``tmp`` to ``path``, replacing what is there (see the module docstring)."""
    tmp, path = Path(tmp), Path(path)
    old = aside_path(path)
    if old.exists():  # ``path`` exists too (callers recover first): a swap that only failed to clean up
        shutil.rmtree(old)
    if path.exists():
        _move_aside(path, old)
        _fsync_dir(path.parent)
    _move_in(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)
    return path


def recover_swap(path, is_complete: Callable[[Path], bool]) -> str | None:
    """Finish a swap of ``path`` that a killed job left half-done.

    Args:
        is_complete: whether a ``<path>.tmp`` folder is a finished new copy (e.g. its ``complete`` flag).
    Returns:
        ``"new"`` when the finished ``.tmp`` was moved in, ``"old"`` when the aside copy was restored,
        ``None`` when there was nothing to finish.
    """
    path = Path(path)
    tmp, old = temporary_path(path), aside_path(path)
    if path.exists():
        if old.exists():
            try:
                shutil.rmtree(old)
                log.warning("%s: removed %s, left by an interrupted swap (the store in place is the new one)",
                            path, old.name)
            except OSError as err:  # e.g. a read-only mount: the store in place is whole, so only warn
                log.warning("%s: could not remove %s left by an interrupted swap (%s); delete it by hand",
                            path, old, err)
        return None
    if tmp.is_dir() and is_complete(tmp):
        _move_in(tmp, path)
        _fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
        log.warning("%s: finished an interrupted swap: moved the complete new copy in from %s", path, tmp.name)
        return "new"
    if old.is_dir():
        _move_in(old, path)
        _fsync_dir(path.parent)
        log.warning("%s: restored the previous copy from %s (the swap was interrupted before the new copy "
                    "was complete)", path, old.name)
        return "old"
    return None
