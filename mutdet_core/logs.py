"""Readable logs for pipeline stages: one format for the console, Snakemake log files and the CLI."""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(log_file=None, level=logging.INFO, append: bool = False) -> logging.Logger:
    """Log to stderr and, if given, to ``log_file`` (created with its parent folder; ``append`` keeps what
    is already there, e.g. for the worker processes of a DDP launch)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a" if append else "w"))
    logging.basicConfig(level=level, format=FORMAT, datefmt="%H:%M:%S", handlers=handlers, force=True)
    logging.captureWarnings(True)
    return logging.getLogger("mutdet")


@contextlib.contextmanager
def stage(name: str, log_file=None):
    """Run a pipeline stage with logging configured; logs its duration and any failure with context."""
    logger = configure_logging(log_file)
    start = time.perf_counter()
    logger.info("stage %s: start", name)
    try:
        yield logger
    except Exception:
        logger.exception("stage %s: failed after %.1f s", name, time.perf_counter() - start)
        raise
    logger.info("stage %s: done in %.1f s", name, time.perf_counter() - start)
