"""The synthetic-data stage as one call (rule ``generate_synthetic``, ``mutdet generate-synthetic``)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..datasets.splits import resolve_classes
from .dataset import SYNTHETIC_CLASSES, generate_synthetic_dataset

log = logging.getLogger(__name__)


def generate_from_config(cfg: dict, out_dir) -> dict:
    """Generate the dataset described by the config's ``synthetic`` block into ``out_dir``."""
    out_dir = Path(out_dir)
    summary = generate_synthetic_dataset(
        out_dir, splits=dict(cfg.get("images", {"train": 16, "val": 4, "test": 6})),
        image_size=(int(cfg.get("min_side", 700)), int(cfg.get("max_side", 1400))), seed=int(cfg.get("seed", 0)),
        classes=list(cfg.get("classes", SYNTHETIC_CLASSES)), gsd_range=tuple(cfg.get("gsd_range", (0.15, 0.55))),
    )
    for split, info in summary["splits"].items():
        log.info("synthetic %s: %d images, %d objects (%s)", split, info["images"], info["objects"],
                 ", ".join(f"{c} {n}" for c, n in info["per_class"].items() if n))
    return summary


def check_synthetic_classes(config: dict) -> list[str]:
    """Problems of synthetic datasets whose class list is not the generated one (``synthetic.classes``):
    a class never drawn would count as a zero-AP class, and a drawn class left out would be unreadable."""
    generated = list(config.get("synthetic", {}).get("classes", SYNTHETIC_CLASSES))
    problems = []
    gsd = config.get("synthetic", {}).get("gsd_range")
    if gsd is not None and not 0 < gsd[0] <= gsd[1]:
        problems.append(f"synthetic.gsd_range {gsd}: need 0 < min <= max (metres per pixel)")
    for name, entry in config["datasets"].items():
        if entry["source"] != "synthetic":
            continue
        classes = resolve_classes(entry.get("classes", "dota_v1"))
        if classes != generated:
            problems.append(f"datasets.{name}.classes {classes} differ from the generated synthetic.classes "
                            f"{generated}: list the same classes in the same order")
    return problems
