"""Tiling stage: mmrotate ``img_split.py`` semantics, cached in a Zarr tile store."""
from .store import TileStore, TileStoreError
from .windows import TilingParams, parse_tile_name, sliding_windows, tile_name

__all__ = ["TileStore", "TileStoreError", "TilingParams", "parse_tile_name", "sliding_windows", "tile_name"]
