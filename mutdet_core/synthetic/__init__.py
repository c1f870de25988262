"""The embedded synthetic aerial dataset: scenes that look enough like DOTA for the whole chain to learn.

``generate_synthetic_dataset`` writes a DOTA-layout dataset; ``generate_scene`` makes one image;
``draw_scene_grid`` draws labelled scenes for the README and for inspection.
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "SYNTHETIC_CLASSES": ".dataset", "generate_synthetic_dataset": ".dataset", "draw_scene_grid": ".preview",
    "THEMES": ".scene", "Scene": ".scene", "generate_scene": ".scene",
}

__all__ = ["SYNTHETIC_CLASSES", "THEMES", "Scene", "draw_scene_grid", "generate_scene", "generate_synthetic_dataset"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
