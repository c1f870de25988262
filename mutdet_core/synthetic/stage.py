"""The synthetic-data stage as one call (rule ``generate_synthetic``, ``mutdet generate-synthetic``)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..datasets.splits import resolve_classes
from .dataset import SYNTHETIC_CLASSES, check_generator_args, generate_synthetic_dataset

log = logging.getLogger(__name__)


def generator_args(cfg: dict) -> dict:
    """``generate_synthetic_dataset`` keyword arguments from the config's ``synthetic`` block (schema defaults
    where a key is absent)."""
    return {"splits": dict(cfg.get("images", {"train": 16, "val": 4, "test": 6})),
            "image_size": (int(cfg.get("min_side", 700)), int(cfg.get("max_side", 1400))),
            "seed": int(cfg.get("seed", 0)), "classes": list(cfg.get("classes", SYNTHETIC_CLASSES)),
            "gsd_range": tuple(cfg.get("gsd_range", (0.15, 0.55)))}


def generate_from_config(cfg: dict, out_dir) -> dict:
    """Generate the dataset described by the config's ``synthetic`` block into ``out_dir``."""
    summary = generate_synthetic_dataset(Path(out_dir), **generator_args(cfg))
    for split, info in summary["splits"].items():
        log.info("synthetic %s: %d images, %d objects (%s)", split, info["images"], info["objects"],
                 ", ".join(f"{c} {n}" for c, n in info["per_class"].items() if n))
    return summary


def check_synthetic_classes(config: dict) -> list[str]:
    """Problems of the ``synthetic`` block (the generator's own argument check, run at DAG time instead of in
    the job) and of synthetic datasets whose class list is not the generated one: a class never drawn would
    count as a zero-AP class, and a drawn class left out would be unreadable."""
    args = generator_args(config.get("synthetic", {}))
    try:
        _, _, generated, _ = check_generator_args(args["splits"], args["image_size"], args["classes"],
                                                  args["gsd_range"])
    except ValueError as err:
        return [f"synthetic: {err}"]
    problems = []
    for name, entry in config["datasets"].items():
        if entry["source"] != "synthetic":
            continue
        classes = resolve_classes(entry.get("classes", "dota_v1"))
        if classes != generated:
            problems.append(f"datasets.{name}.classes {classes} differ from the generated synthetic.classes "
                            f"{generated}: list the same classes in the same order")
    return problems
