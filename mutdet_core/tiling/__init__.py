"""Tiling stage: mmrotate ``img_split.py`` semantics, cached in a Zarr tile store."""
from .._lazy import lazy_exports

_EXPORTS = {
    "TileStore": ".store", "TileStoreError": ".store", "TilingParams": ".params", "parse_tile_name": ".windows",
    "sliding_windows": ".windows", "tile_name": ".windows",
}

__all__ = ["TileStore", "TileStoreError", "TilingParams", "parse_tile_name", "sliding_windows", "tile_name"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
