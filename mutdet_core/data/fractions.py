"""Data fractions for the fine-tuning tables (10 / 25 / 50 / 100 % of the training images).

The paper's subsets were not released (MutDet reference, section 8), so they are chosen here:

* whole images, never single tiles (a fraction counts images, and the tiles of one image overlap);
* seeded and stable: every image gets the rank ``sha256(f"{seed}:{image_id}")``; a fraction ``f`` of N
  images keeps the ``k = ceil(f * N)`` images of lowest rank (at least one). The rank of an image does not
  depend on the other ids, on their order or on the numpy version, so the choice is reproducible anywhere;
* nested: for one seed the images of a smaller fraction are a subset of those of any larger one (they are
  prefixes of the same ranking): 10 % is inside 25 %, inside 50 %, inside 100 %, so differences between
  fractions are not blurred by different image draws.

The caller writes the chosen list as an artifact (``write_id_list``), one id per line, sorted.
"""
from __future__ import annotations

import hashlib
import math
import numbers
from pathlib import Path
from typing import Iterable


def _rank(seed: int, image_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:{image_id}".encode("utf-8")).digest()


def fraction_size(num_images: int, fraction: float) -> int:
    """Images kept for ``fraction`` of ``num_images``: ``ceil(fraction * N)``, at least 1.
    (``round(., 9)`` first, so 0.1 * 30 = 3.0000000000000004 keeps 3 and not 4.)"""
    return max(1, min(num_images, math.ceil(round(fraction * num_images, 9))))


def check_fraction(fraction) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or math.isnan(fraction):
        raise ValueError(f"data fraction must be a number in (0, 1], got {fraction!r}")
    if not 0 < fraction <= 1:
        hint = " (write 0.1 for 10 %, not 10)" if fraction > 1 else ""
        raise ValueError(f"data fraction must be in (0, 1], got {fraction}{hint}")
    return float(fraction)


def select_fraction(image_ids: Iterable[str], fraction: float, seed: int = 0) -> list[str]:
    """The sorted image ids of a ``fraction`` subset (see the module docstring).

    Args:
        image_ids: ids of the training images; duplicates (one per tile) are fine.
        fraction: in (0, 1]; 1 returns every image.
        seed: subset seed (different seeds give independent subsets).
    Raises:
        ValueError: fraction outside (0, 1] or not a number, or no image ids.
    """
    fraction = check_fraction(fraction)
    ids = sorted({str(i) for i in image_ids})
    if not ids:
        raise ValueError("select_fraction: no image ids given (is the training split empty?)")
    ranked = sorted(ids, key=lambda image_id: _rank(int(seed), image_id))
    return sorted(ranked[:fraction_size(len(ids), fraction)])


def write_id_list(path, image_ids: Iterable[str]) -> Path:
    """Write ids one per line (sorted), atomically enough for an artifact: temp file then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{i}\n" for i in sorted(image_ids)))
    tmp.replace(path)
    return path


def read_id_list(path) -> list[str]:
    """Ids from a file written by ``write_id_list`` (blank lines ignored); a clear error when missing/empty."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image id list not found")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{path}: the image id list is empty")
    return ids
