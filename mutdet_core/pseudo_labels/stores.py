"""Openers of the stage stores that light jobs read without the heavy module that writes them.

The clustering stage (``clustering.py``: ``fit_clusters``, ``assign_pseudo_labels``) reads embeddings
stores; ``embeddings.py``, which writes them, imports torch and torchvision, so the format name and the
opener live here (``embeddings.py`` re-exports both: ``from mutdet_core.pseudo_labels.embeddings import
open_embeddings`` keeps working).
"""
from __future__ import annotations

from .artifact import open_stage

EMBEDDINGS_FORMAT = "mutdet-embeddings"


def open_embeddings(path):
    """Open a finished embeddings store (``StageError`` otherwise)."""
    return open_stage(path, EMBEDDINGS_FORMAT)
