"""Write a synthetic dataset in DOTA layout: the pipeline's embedded default data.

Layout (what ``datasets.splits.load_split`` reads for ``source: synthetic``)::

    out_dir/classes.txt                  one class per line
    out_dir/summary.json                 counts per split and class, seed, sizes, themes
    out_dir/{split}/images/S0000.png     RGB scenes
    out_dir/{split}/labelTxt/S0000.txt   DOTA v1.0 labels (header imagesource:synthetic, gsd:<m/px>)

Image ids run over all splits in order (train S0000..., then val, then test) so they are unique, while
each image's content depends only on ``(seed, split name, index in split)``: asking for more training
images does not change the validation images.
"""
from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import cv2
import numpy as np

from ..datasets.dota import write_dota_txt
from .scene import THEMES, generate_scene

# DOTA v1.0 names, in DOTA's class order, so the DOTA class list, tools and colours apply.
SYNTHETIC_CLASSES = ("plane", "bridge", "small-vehicle", "large-vehicle", "ship", "tennis-court",
                     "storage-tank", "harbor")
DEFAULT_SPLITS = {"train": 16, "val": 4, "test": 6}
GENERATOR_VERSION = 1  # bump when a change alters the images of a given seed
_ID = re.compile(r"^S\d{4,}\.(png|txt)$")


def check_generator_args(splits: dict, image_size, classes, gsd_range) -> tuple[dict, tuple[int, int], list, tuple]:
    """The generator's arguments, normalised (``classes`` None = all); ValueError names the bad one."""
    if not isinstance(splits, dict) or not splits:
        raise ValueError(f"splits must be a non-empty dict {{name: count}}, got {splits!r}")
    for name, n in splits.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
            raise ValueError(f"split name {name!r} must be letters, digits, '_' or '-'")
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"split {name!r}: image count must be a non-negative integer, got {n!r}")
    try:
        lo, hi = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (min_side, max_side), got {image_size!r}") from None
    if not 128 <= lo <= hi:
        raise ValueError(f"image_size {image_size!r}: need 128 <= min_side <= max_side")
    classes = list(SYNTHETIC_CLASSES if classes is None else classes)
    unknown = [c for c in classes if c not in SYNTHETIC_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes {classes!r}: must be distinct names from {list(SYNTHETIC_CLASSES)}"
                         + (f" (unknown: {unknown})" if unknown else ""))
    g0, g1 = (float(v) for v in gsd_range)
    if not 0 < g0 <= g1:
        raise ValueError(f"gsd_range {gsd_range!r}: need 0 < min <= max (metres per pixel)")
    return {str(k): int(v) for k, v in splits.items()}, (lo, hi), classes, (g0, g1)


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: independent of every other image."""
    return np.random.default_rng([int(seed), zlib.crc32(split.encode("utf-8")), int(index), GENERATOR_VERSION])


def image_shape(rng: np.random.Generator, index: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)``: uniform in ``image_size``, except the first image of a split, whose sides both
    come from the lowest eighth of the range (with the default 700-1400, smaller than an 800 tile, so that
    every split exercises the tiler's padding)."""
    lo, hi = image_size
    top = hi if index else lo + (hi - lo) // 8
    w, h = rng.integers(lo, top + 1, size=2)
    return int(w), int(h)


def _clear_stale(folder: Path) -> None:
    """Remove generated files of an earlier run (only names like ``S0001.png``), so a run with fewer
    images does not leave extra ones behind."""
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_file() and _ID.match(p.name):
                p.unlink()


def generate_synthetic_dataset(out_dir, splits: dict | None = None, image_size=(700, 1400), seed: int = 0,
                               classes=None, gsd_range=(0.15, 0.55), themes=THEMES) -> dict:
    """Generate and write a synthetic DOTA-layout dataset (see the module docstring).

    Args:
        out_dir: dataset root (created).
        splits: ``{split name: number of images}``; default ``{"train": 16, "val": 4, "test": 6}``.
        image_size: ``(min_side, max_side)`` in pixels; each side is drawn uniformly in the range.
        seed: the same seed gives byte-identical files.
        classes: DOTA class names to label, a subset of ``SYNTHETIC_CLASSES`` (default all). Object
            classes left out are not drawn; harbors and bridges are still drawn, unlabelled.
        gsd_range: metres per pixel, drawn log-uniformly per image (object sizes are metric).
        themes: scene themes cycled through in order within each split (image ``i`` gets
            ``themes[i % len(themes)]``), so a small split still holds every class.

    Returns:
        The summary written to ``summary.json``: ``seed``, ``image_size``, ``gsd_range``, ``classes``,
        ``generator_version``, and per split ``images``, ``objects``, ``per_class`` (counts),
        ``difficult``, and ``files`` (``[{"id", "width", "height", "theme", "gsd", "objects"}]``).
    """
    splits, image_size, classes, gsd_range = check_generator_args(
        DEFAULT_SPLITS if splits is None else splits, image_size, classes, gsd_range)
    unknown_themes = [t for t in themes if t not in THEMES]
    if not themes or unknown_themes:
        raise ValueError(f"themes {themes!r}: must be a non-empty list from {list(THEMES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("".join(c + "\n" for c in classes), encoding="utf-8")
    summary = {"seed": int(seed), "image_size": list(image_size), "gsd_range": list(gsd_range), "classes": classes,
               "generator_version": GENERATOR_VERSION, "splits": {}}
    next_id = 0
    for split, count in splits.items():
        img_dir, lbl_dir = out / split / "images", out / split / "labelTxt"
        for d in (img_dir, lbl_dir):
            _clear_stale(d)
            d.mkdir(parents=True, exist_ok=True)
        per_class = {c: 0 for c in classes}
        files, n_obj, n_diff = [], 0, 0
        for index in range(count):
            rng = image_rng(seed, split, index)
            width, height = image_shape(rng, index, image_size)
            scene = generate_scene(rng, width, height, classes, theme=themes[index % len(themes)], gsd_range=gsd_range)
            image_id = f"S{next_id:04d}"
            next_id += 1
            img_path = img_dir / f"{image_id}.png"
            if not cv2.imwrite(str(img_path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write {img_path}")
            record = scene.record(image_id, img_path)
            write_dota_txt(record, lbl_dir / f"{image_id}.txt")
            for c in record.classes:
                per_class[c] += 1
            n_obj += len(record)
            n_diff += int((record.difficulty > 0).sum())
            files.append({"id": image_id, "width": width, "height": height, "theme": scene.theme,
                          "gsd": round(scene.gsd, 6), "objects": len(record)})
        summary["splits"][split] = {"images": count, "objects": n_obj, "difficult": n_diff,
                                    "per_class": per_class, "files": files}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return summary
