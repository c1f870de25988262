"""Reading one split of a configured dataset, whatever its source format.

A dataset entry of ``config.yaml`` (see the schema) names a ``source`` format and a ``root``; this module
turns ``(entry, split)`` into ``ImageRecord``s and says clearly what is missing when the layout is wrong.
"""
from __future__ import annotations

from pathlib import Path

from .dota import read_dota_folder
from .records import ImageRecord


def resolve_classes(classes) -> list[str]:
    """A class list from a name (``dota_v1``, ``dior_r``, ``synthetic``, ...) or an explicit list."""
    if isinstance(classes, (list, tuple)):
        return list(classes)
    if classes == "synthetic":
        from ..synthetic import SYNTHETIC_CLASSES

        return list(SYNTHETIC_CLASSES)
    from .classes import get_class_list

    return list(get_class_list(classes).names)


def dataset_root(entry: dict, name: str, results_dir="results") -> Path:
    """Root folder of a dataset: generated ones live under ``<results>/data/<name>``."""
    if entry["source"] == "synthetic":
        return Path(results_dir) / "data" / name
    if not entry.get("root"):
        raise ValueError(f"dataset {name!r}: source {entry['source']!r} needs a 'root' folder")
    return Path(entry["root"])


def split_inputs(entry: dict, name: str, split: str, results_dir="results") -> list[Path]:
    """Folders a split is read from (Snakemake tracks them as rule inputs)."""
    root = dataset_root(entry, name, results_dir)
    source = entry["source"]
    if source in ("synthetic", "dota", "fair1m", "hrrsd", "ohd_sjtu"):
        return [root] if source == "synthetic" else [root / split]
    if source == "dior_r":
        return [root]
    raise ValueError(f"dataset {name!r}: unknown source {source!r}")


def check_dataset_layout(entry: dict, name: str) -> list[str]:
    """Problems with an on-disk dataset's layout (empty list when fine). Synthetic data is generated."""
    if entry["source"] == "synthetic":
        return []
    problems = []
    root = Path(entry.get("root") or "")
    if not entry.get("root"):
        return [f"dataset {name!r}: 'root' is required for source {entry['source']!r}"]
    if not root.is_dir():
        return [f"dataset {name!r}: root {root} does not exist"]
    if entry["source"] in ("dota", "ohd_sjtu", "fair1m", "hrrsd"):
        for split in entry.get("splits", []):
            if not (root / split).is_dir():
                problems.append(f"dataset {name!r}: split folder {root / split} does not exist")
    return problems


def load_split(entry: dict, name: str, split: str, results_dir="results", root=None) -> list[ImageRecord]:
    """All ``ImageRecord``s of one split, sorted by image id. ``root`` overrides the dataset root (the
    Snakemake rule passes its input folder, so no path is hard-coded twice)."""
    root = Path(root) if root is not None else dataset_root(entry, name, results_dir)
    classes = resolve_classes(entry.get("classes", "dota_v1"))
    labelled = entry.get("labelled", True)
    source = entry["source"]
    if source in ("synthetic", "dota"):
        base = root / split
        labels = base / "labelTxt"
        return read_dota_folder(base / "images", labels if labels.is_dir() or labelled else None,
                                class_names=classes, require_labels=labelled)
    if source == "dior_r":
        from .dior import read_dior_split

        return read_dior_split(root, split, class_names=classes)
    if source == "ohd_sjtu":
        from .ohd_sjtu import read_ohd_sjtu_folder

        return read_ohd_sjtu_folder(root / split, class_names=classes)
    if source == "fair1m":
        from .fair1m import read_fair1m_folder

        return read_fair1m_folder(root / split)
    if source == "hrrsd":
        from .hrrsd import read_hrrsd_folder

        return read_hrrsd_folder(root / split)
    raise ValueError(f"dataset {name!r}: unknown source {source!r}")
