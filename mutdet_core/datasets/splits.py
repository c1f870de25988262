"""Reading one split of a configured dataset, whatever its source format.

A dataset entry of ``config.yaml`` (see the schema) names a ``source`` format and a ``root``; this module
turns ``(entry, split)`` into ``ImageRecord``s and says clearly what is missing when the layout is wrong.
"""
from __future__ import annotations

import os
from pathlib import Path

from .dior import DIOR_ANNOTATION_SUBDIR
from .dota import IMAGE_EXTENSIONS, read_dota_folder
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


def is_flat_dota(entry: dict) -> bool:
    """A DOTA-layout dataset given as one flat folder (``<root>/images`` + ``<root>/labelTxt``, as DOTA's own
    devkit samples and most users' imagery come) instead of ``<root>/<split>/images``: its one split is the
    root itself, whatever the split is called."""
    return entry["source"] == "dota" and bool(entry.get("root")) and (Path(entry["root"]) / "images").is_dir()


def split_folder(entry: dict, root: Path, split: str) -> Path:
    """The folder holding a split's ``images`` / ``labelTxt`` (the root itself for a flat DOTA folder)."""
    return Path(root) if is_flat_dota(entry) else Path(root) / split


def split_inputs(entry: dict, name: str, split: str, results_dir="results") -> list[Path]:
    """Folders a split is read from (Snakemake tracks them as rule inputs)."""
    root = dataset_root(entry, name, results_dir)
    source = entry["source"]
    if source in ("synthetic", "dota", "fair1m", "hrrsd", "ohd_sjtu"):
        return [root] if source == "synthetic" else [split_folder(entry, root, split)]
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
    source = entry["source"]
    if is_flat_dota(entry):
        splits = entry.get("splits", [])
        if len(splits) != 1:
            return [f"dataset {name!r}: {root} is one flat folder (images/ + labelTxt/), so it is one split; "
                    f"list exactly one split name (e.g. splits: [all]), got {splits}"]
        return _image_folder_problems(name, root / "images")
    if source in ("dota", "ohd_sjtu", "fair1m", "hrrsd"):
        for split in entry.get("splits", []):
            if not (root / split).is_dir():
                problems.append(f"dataset {name!r}: split folder {root / split} does not exist")
            else:
                problems += _image_folder_problems(name, _image_folder(source, root / split))
    if source == "dior_r":
        for sub in (DIOR_ANNOTATION_SUBDIR, Path("ImageSets") / "Main"):
            if not (root / sub).is_dir():
                problems.append(f"dataset {name!r}: DIOR-R folder {root / sub} does not exist (the official "
                                f"layout: JPEGImages-*, Annotations/Oriented Bounding Boxes, ImageSets/Main)")
        for split in entry.get("splits", []):
            if split not in DIOR_SPLITS:
                problems.append(f"dataset {name!r}: DIOR-R split {split!r} is not one of {list(DIOR_SPLITS)}")
                continue
            folder = root / ("JPEGImages-test" if split == "test" else "JPEGImages-trainval")
            problems += _image_folder_problems(name, folder)
    return list(dict.fromkeys(problems))  # DIOR-R train and val share one folder: say it once


DIOR_SPLITS = ("train", "val", "test", "trainval")


def _image_folder(source: str, split_dir: Path) -> Path:
    """Where the reader of ``source`` looks for a split's images."""
    if source == "hrrsd":  # the split folder, or its OPT2017 subfolder as released
        base = split_dir / "OPT2017" if (split_dir / "OPT2017").is_dir() else split_dir
        return base / "JPEGImages"
    return split_dir / "images"


def _image_folder_problems(name: str, folder: Path) -> list[str]:
    """An image folder that is missing or holds no image file (an empty tile job would fail later)."""
    if not folder.is_dir():
        return [f"dataset {name!r}: image folder {folder} does not exist"]
    with os.scandir(folder) as it:  # stops at the first image: release folders hold thousands
        if any(e.is_file() and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS for e in it):
            return []
    return [f"dataset {name!r}: image folder {folder} holds no image file ({' '.join(IMAGE_EXTENSIONS)}); "
            f"copy the images there or fix 'root'"]


def load_split(entry: dict, name: str, split: str, results_dir="results", root=None) -> list[ImageRecord]:
    """All ``ImageRecord``s of one split, sorted by image id. ``root`` overrides the dataset root (the
    Snakemake rule passes its input folder, so no path is hard-coded twice)."""
    root = Path(root) if root is not None else dataset_root(entry, name, results_dir)
    classes = resolve_classes(entry.get("classes", "dota_v1"))
    labelled = entry.get("labelled", True)
    source = entry["source"]
    if source in ("synthetic", "dota"):
        base = split_folder(entry, root, split) if source == "dota" else root / split
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
