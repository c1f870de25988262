"""How an image is cut into tiles: the parameters and their checks, free of shapely and numpy.

The DAG-time config check (``mutdet_core.config.tiling_problems``) and the tile job both use
:func:`tiling_problems`, so a bad sizes/gaps/rates combination gets the same message in both places and
stops Snakemake before any job runs.
"""
from __future__ import annotations

from dataclasses import dataclass


def tiling_problems(sizes, gaps, rates, iof_thr: float = 0.7) -> list[str]:
    """Every problem of one tiling block, each a sentence saying what to change; ``[]`` when it is valid.

    Besides mmrotate's own constraints, a rate rescales size and gap separately (``int(size / rate)``), so
    truncation can leave a window with no stride even when ``gap < size`` at rate 1.
    """
    sizes, gaps, rates = list(sizes), list(gaps), list(rates)
    if len(sizes) != len(gaps):
        return [f"{len(sizes)} sizes {sizes} but {len(gaps)} gaps {gaps}; give one gap per size"]
    problems = []
    if len(sizes) > 1 and len(rates) > 1:
        problems.append(f"several sizes {sizes} and several rates {rates}; give one or the other (as mmrotate)")
    bad_rates = [r for r in rates if not r > 0]
    if bad_rates:
        problems.append(f"rates must be positive, got {rates}")
    if not 0 <= iof_thr <= 1:
        problems.append(f"iof_thr {iof_thr} must be in [0, 1]")
    for size, gap in zip(sizes, gaps):
        if gap < 0:
            problems.append(f"gap {gap} < 0 (of gaps {gaps}); the gap is the overlap of neighbouring windows")
            continue
        if gap >= size:
            problems.append(f"gap {gap} >= size {size} (of sizes {sizes}, gaps {gaps}); the gap is the overlap "
                            f"of neighbouring windows (stride = size - gap): make it smaller")
            continue
        for rate in rates:
            if rate > 0 and int(gap / rate) >= int(size / rate):
                problems.append(f"at rate {rate} size {size} / gap {gap} become {int(size / rate)} / "
                                f"{int(gap / rate)} px, leaving no stride; lower the rate or the gap")
    return problems


@dataclass(frozen=True)
class TilingParams:
    """How an image is cut into tiles (SPEC 2.1; mmrotate ``ss_*.json`` plus MutDet's 800/200).

    ``sizes`` and ``gaps`` are the window size and overlap at rate 1. A rate changes the window, not the
    image: ``size = int(size / rate)`` as in mmrotate (the network's resize scales the patch later).
    ``padding_value`` is BGR like mmrotate's (104, 116, 124).
    """

    sizes: tuple[int, ...] = (800,)
    gaps: tuple[int, ...] = (200,)
    rates: tuple[float, ...] = (1.0,)
    img_rate_thr: float = 0.6
    iof_thr: float = 0.7
    padding_value: tuple[int, int, int] = (104, 116, 124)

    def __post_init__(self):
        problems = tiling_problems(self.sizes, self.gaps, self.rates, self.iof_thr)
        if problems:
            raise ValueError("tiling: " + "; ".join(problems))

    def window_sizes(self) -> list[tuple[int, int]]:
        """(size, gap) pairs after applying the rates, in mmrotate's order."""
        pairs = []
        for rate in self.rates:
            pairs += [(int(size / rate), int(gap / rate)) for size, gap in zip(self.sizes, self.gaps)]
        return pairs


def tiling_params(cfg: dict) -> TilingParams:
    """TilingParams from a config ``tiling`` block (schema defaults already filled in)."""
    return TilingParams(
        sizes=tuple(cfg.get("sizes", [800])), gaps=tuple(cfg.get("gaps", [200])),
        rates=tuple(float(r) for r in cfg.get("rates", [1.0])),
        img_rate_thr=float(cfg.get("img_rate_thr", 0.6)), iof_thr=float(cfg.get("iof_thr", 0.7)),
        padding_value=tuple(cfg.get("padding_value", [104, 116, 124])),
    )
