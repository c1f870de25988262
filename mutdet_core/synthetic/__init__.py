"""The embedded synthetic aerial dataset: scenes that look enough like DOTA for the whole chain to learn.

``generate_synthetic_dataset`` writes a DOTA-layout dataset; ``generate_scene`` makes one image;
``draw_scene_grid`` draws labelled scenes for the README and for inspection.
"""
from .dataset import SYNTHETIC_CLASSES, generate_synthetic_dataset
from .preview import draw_scene_grid
from .scene import THEMES, Scene, generate_scene

__all__ = ["SYNTHETIC_CLASSES", "THEMES", "Scene", "draw_scene_grid", "generate_scene", "generate_synthetic_dataset"]
