"""The synthetic-data stage as one call (rule ``generate_synthetic``, ``mutdet generate-synthetic``)."""
from __future__ import annotations

import logging
from pathlib import Path

from .dataset import generate_synthetic_dataset

log = logging.getLogger(__name__)


def generate_from_config(cfg: dict, out_dir) -> dict:
    """Generate the dataset described by the config's ``synthetic`` block into ``out_dir``."""
    out_dir = Path(out_dir)
    summary = generate_synthetic_dataset(
        out_dir, splits=dict(cfg.get("images", {"train": 16, "val": 4, "test": 6})),
        image_size=(int(cfg.get("min_side", 700)), int(cfg.get("max_side", 1400))), seed=int(cfg.get("seed", 0)),
    )
    for split, info in summary["splits"].items():
        log.info("synthetic %s: %d images, %d objects (%s)", split, info["images"], info["objects"],
                 ", ".join(f"{c} {n}" for c, n in info["per_class"].items() if n))
    return summary
